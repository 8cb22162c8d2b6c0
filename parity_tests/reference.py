"""An independent CTC in NumPy float64: the yardstick where the original cannot be.

Written straight from Graves et al. (2006), one example at a time, with none of the
port's code: unnormalised log-domain alpha and beta over the blank-augmented states.
It gives the original's loss (the max of the two final states), the exact negative
log-likelihood (their log-sum-exp), and the exact gradient with respect to logits.
Slow on purpose: it is for tests.
"""
from __future__ import annotations

import numpy as np


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _lse(*terms: np.ndarray) -> np.ndarray:
    stack = np.stack(terms)
    m = stack.max(axis=0)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m_safe + np.log(np.exp(stack - m_safe).sum(axis=0))


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """x moved k places to higher indices (k < 0: lower), -inf where nothing arrives."""
    out = np.full_like(x, -np.inf)
    if abs(k) < len(x):
        if k >= 0:
            out[k:] = x[: len(x) - k]
        else:
            out[:k] = x[-k:]
    return out


def ctc_example(aug_labels, logits) -> dict:
    """One example: ``aug_labels`` (L,) with boundary blanks, ``logits`` (T, C).

    Returns a dict with ``max_final`` and ``log_likelihood`` (floats, -inf when no
    alignment exists) and ``grad`` (T, C): d(-log_likelihood)/d logits.
    """
    labels = np.asarray(aug_labels, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    frames, classes = logits.shape
    width = len(labels)
    if frames == 0:
        empty = 0.0 if width == 1 else -np.inf
        return dict(max_final=empty, log_likelihood=empty, grad=np.zeros((0, classes)))
    log_probs = _log_softmax(logits)
    emit = log_probs[:, labels]  # (T, L)
    skip = np.zeros(width, dtype=bool)
    skip[2:] = labels[2:] != labels[:-2]
    neg = np.full(width, -np.inf)

    alpha = np.full((frames, width), -np.inf)
    alpha[0, 0] = emit[0, 0]
    if width > 1:
        alpha[0, 1] = emit[0, 1]
    for t in range(1, frames):
        prev = alpha[t - 1]
        advance = _shift(prev, 1)
        jump = np.where(skip, _shift(prev, 2), neg)
        alpha[t] = _lse(prev, advance, jump) + emit[t]

    beta = np.full((frames, width), -np.inf)  # frames after t only
    beta[-1, -1] = 0.0
    if width > 1:
        beta[-1, -2] = 0.0
    skip_out = np.zeros(width, dtype=bool)
    skip_out[:-2] = skip[2:]
    for t in range(frames - 2, -1, -1):
        nxt = beta[t + 1] + emit[t + 1]
        advance = _shift(nxt, -1)
        jump = np.where(skip_out, _shift(nxt, -2), neg)
        beta[t] = _lse(nxt, advance, jump)

    finals = alpha[-1, -2:] if width > 1 else alpha[-1, -1:]
    log_likelihood = float(_lse(*finals))
    grad = np.exp(log_probs)
    if np.isfinite(log_likelihood):
        gamma = np.exp(alpha + beta - log_likelihood)  # (T, L)
        for j, c in enumerate(labels):
            grad[:, c] -= gamma[:, j]
    return dict(max_final=float(finals.max()), log_likelihood=log_likelihood, grad=grad)


def ctc_batch(aug_labels, aug_len, logits, logits_len, *, mode="original",
              zero_infinity=False):
    """Batched loss (B,) and gradient (B, T, C) of ``sum(loss)``.

    ``mode="original"``: the TF original's rule: minus the max of the two final
    states, and 0 loss and 0 gradient when ``logits_len < aug_len``.
    ``mode="exact"``: the CTC negative log-likelihood; ``inf`` where no alignment
    exists (0 loss and 0 gradient with ``zero_infinity``).
    Padded frames get gradient 0 whatever they hold.
    """
    aug_labels, aug_len = np.asarray(aug_labels), np.asarray(aug_len)
    logits, logits_len = np.asarray(logits, dtype=np.float64), np.asarray(logits_len)
    loss = np.zeros(len(aug_len))
    grad = np.zeros_like(logits)
    for b in range(len(aug_len)):
        frames, width = int(logits_len[b]), int(aug_len[b])
        out = ctc_example(aug_labels[b, :width], logits[b, :frames])
        if mode == "original":
            if frames >= width:
                loss[b] = -out["max_final"]
                grad[b, :frames] = out["grad"]
        elif mode == "exact":
            if np.isfinite(out["log_likelihood"]):
                loss[b] = -out["log_likelihood"]
                grad[b, :frames] = out["grad"]
            elif not zero_infinity:
                loss[b] = np.inf
        else:
            raise ValueError(f"mode must be 'original' or 'exact', got {mode!r}")
    return loss, grad
