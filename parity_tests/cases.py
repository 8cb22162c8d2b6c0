"""Random CTC inputs shared by the hypothesis parity tests and the comparison command.

A case holds raw labels (with repeats), their blank-augmented form, logits whose
padded frames may hold arbitrary values (NaN, inf, huge), and lengths that may be
shorter than the padded axes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

import seq_loss_util as S

GARBAGE = (np.nan, np.inf, -np.inf, 1e30, -1e30, 1e4)


@dataclasses.dataclass
class Case:
    raw_labels: np.ndarray  # (B, U') int32, U' >= max(raw_len)
    raw_len: np.ndarray  # (B,) int32
    blank: int
    aug_labels: np.ndarray  # (B, 2U' + 1) int32
    aug_len: np.ndarray  # (B,) int32
    logits: np.ndarray  # (B, T', C) float32, T' >= max(logits_len)
    logits_len: np.ndarray  # (B,) int32
    weights: np.ndarray  # (B,) float32: an incoming gradient that is not all ones

    @property
    def shape(self) -> str:
        batch, frames, classes = self.logits.shape
        return f"B={batch} T={frames} C={classes} U={self.raw_labels.shape[1]}"


def min_frames(raw: np.ndarray, raw_len: np.ndarray) -> np.ndarray:
    """``(B,)`` the fewest frames that can carry each label sequence: U plus the number
    of adjacent repeats (each repeat needs a blank frame between its two labels)."""
    raw, raw_len = np.asarray(raw), np.asarray(raw_len)
    width = raw.shape[1]
    inside = np.arange(1, width)[None, :] < raw_len[:, None]  # (B, U' - 1)
    repeats = ((raw[:, 1:] == raw[:, :-1]) & inside).sum(1) if width > 1 else 0
    return (raw_len + repeats).astype(np.int64)


def tight_lengths(rng: np.random.Generator, raw: np.ndarray, raw_len: np.ndarray) -> np.ndarray:
    """``(B,)`` frame counts at the edges that random lengths rarely hit: exactly
    U + repeats (one alignment left), one fewer (infeasible by one frame), and 2U + 1
    (the original's own threshold), drawn per example."""
    need = min_frames(raw, raw_len)
    edges = np.stack([need, np.maximum(need - 1, 0), 2 * np.asarray(raw_len) + 1], 1)  # (B, 3)
    return edges[np.arange(len(need)), rng.integers(0, 3, len(need))]


def random_case(rng: np.random.Generator, *, batch: int, max_time: int, max_label: int,
                classes: int, blank: int | None = None, scale: float = 3.0,
                pad_labels: int = 0, pad_time: int = 0, garbage: bool = True,
                min_time: int = 0, min_label: int = 0, tight: bool = False) -> Case:
    """Draws one batch. Lengths are uniform in their ranges; labels repeat often.
    ``tight`` replaces the frame counts with :func:`tight_lengths` (the time axis then
    grows past ``max_time`` where an edge needs it)."""
    if classes < 2:
        raise ValueError(f"classes must be >= 2 (a label and the blank), got {classes}")
    blank = int(rng.integers(0, classes)) if blank is None else blank
    raw_len = rng.integers(min(min_label, max_label), max_label + 1, size=batch).astype(np.int32)
    width = int(raw_len.max()) + pad_labels
    # A small alphabet half of the time, so repeated labels are common.
    alphabet = classes - 1 if rng.random() < 0.5 else min(classes - 1, 2)
    raw = rng.integers(0, alphabet, size=(batch, width)).astype(np.int32)
    raw[np.arange(width)[None, :] >= raw_len[:, None]] = 0
    logits_len = rng.integers(min(min_time, max_time), max_time + 1, size=batch).astype(np.int32)
    if tight:
        logits_len = tight_lengths(rng, raw, raw_len).astype(np.int32)
    frames = int(logits_len.max()) + pad_time
    logits = (rng.standard_normal((batch, frames, classes)) * scale).astype(np.float32)
    if garbage:
        padded = np.arange(frames)[None, :] >= logits_len[:, None]
        logits[padded] = GARBAGE[int(rng.integers(0, len(GARBAGE)))]
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.from_numpy(raw),
                                       "SEQ_LEN": torch.from_numpy(raw_len)}, blank, True)
    weights = rng.uniform(0.25, 2.0, size=batch).astype(np.float32)
    return Case(raw, raw_len, blank, aug["SEQ_DATA"].numpy(), aug["SEQ_LEN"].numpy(),
                logits, logits_len, weights)
