"""Connectionist Temporal Classification (CTC) loss in PyTorch.

A function-for-function port of the TensorFlow module ``seq_loss_util.py`` used in
a speech-recognition course (chanwcom/cognitive_workflow_kit, ``loss/tensorflow``).
The public names, argument order, shapes and dtypes follow that module, so code
written against it runs here; with default arguments the numbers are the same
wherever the original returns finite numbers.

Notation used in shapes: ``B`` batch, ``U`` raw label length, ``L`` blank-augmented
label length (``2U + 1`` with boundary blanks), ``T`` frames, ``C`` classes
including the blank. Everything in the log domain is named ``log_*``.

Reference: A. Graves, S. Fernandez, F. Gomez, J. Schmidhuber, "Connectionist
Temporal Classification: Labelling Unsegmented Sequence Data with Recurrent Neural
Networks", ICML 2006.

Where this port departs from the original (each with its reason):

* ``ctc_loss`` works from ``log_softmax`` and a banded (stay / advance / skip)
  recursion instead of ``log(softmax)`` and a dense ``(B, L, L)`` table, so logits
  scaled by 100 give a finite loss and gradient, and the cost is linear in ``L``.
* Padded frames (``t >= logits_len``) are *selected* away, never multiplied by a
  mask, so NaN or inf there cannot reach the loss or the gradient.
* An empty label (``U == 0``) gives the loss of the all-blank path instead of an
  indexing error.
* Label padding wider than ``max(labels_len)`` and a time axis wider than
  ``max(logits_len)`` are handled as if the padding were trimmed.
* float64 inputs compute in float64 (the original fixes float32); float16 and
  bfloat16 compute in float32 and the gradient is returned in the input dtype.
* Bad input raises ``ValueError`` / ``TypeError`` naming the argument before any
  computation, instead of a gather error from deep inside the graph.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import math
import os
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "LOG_0",
    "log_0",
    "to_blank_augmented_labels",
    "calculate_initial_log_seq_prob",
    "calculate_log_label_prob",
    "label_trans_table",
    "calculate_alpha_beta",
    "CtcLoss",
    "ctc_loss",
    "CtcLossModule",
    "backend",
    "Alignment",
    "Segment",
    "forced_align",
    "alignment_segments",
    "alignment_targets",
]  # and the decoding names, where ctc_decoder.py is installed (at the end)

__version__ = "0.2.0"

# The original's stand-in for log(0): float32(log(1e-307)), i.e. -706.8936.
LOG_0 = float(np.float32(math.log(1e-307)))
log_0 = LOG_0  # the original's own spelling

SEQ_DATA = "SEQ_DATA"
SEQ_LEN = "SEQ_LEN"


# ----------------------------------------------------------------------------------
# Input checks. Each names the argument and what was expected, and runs before any
# computation so that a bad call fails here rather than inside a gather.
# ----------------------------------------------------------------------------------
def _as_tensor(x, name: str, device=None) -> torch.Tensor:
    if torch.is_tensor(x):
        return x if device is None or x.device == device else x.to(device)
    try:
        return torch.as_tensor(np.asarray(x), device=device)
    except Exception as e:  # pragma: no cover - message only
        raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from e


def _first(mask: torch.Tensor):
    """The index (a tuple of ints) of the first True in ``mask``, or None: one host
    read when there is none, the common case."""
    if not bool(mask.any()):
        return None
    return tuple(int(i) for i in mask.nonzero()[0])


def _check_int(x: torch.Tensor, name: str, ndim: int, shape_doc: str) -> None:
    if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
        raise TypeError(f"{name} must be an integer tensor {shape_doc}, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(x.shape)}")


def _check_float(x: torch.Tensor, name: str, ndim: int, shape_doc: str) -> None:
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor {shape_doc}, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(x.shape)}")


def _check_batch(batch: int, **tensors: torch.Tensor) -> None:
    for name, x in tensors.items():
        if x.shape[0] != batch:
            raise ValueError(
                f"{name} has batch size {x.shape[0]}, expected {batch} (batch sizes must agree)"
            )


def _check_lengths(lengths: torch.Tensor, name: str, width: int, axis_doc: str) -> None:
    if lengths.numel() == 0:
        return
    low, high = (int(v) for v in torch.stack([lengths.min(), lengths.max()]).tolist())
    if low < 0:
        b = int(torch.argmin(lengths))
        raise ValueError(f"{name} must be >= 0, got {low} for example {b}")
    if high > width:
        b = int(torch.argmax(lengths))
        raise ValueError(
            f"{name} must be <= the padded {axis_doc} ({width}), got {high} for example {b}"
        )


def _check_class_id(value, name: str, classes: int) -> int:
    """``value`` as an int if it names one of ``classes`` classes (a blank's id)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            0 <= value < classes):
        raise ValueError(f"{name} must be a class id in [0, {classes - 1}], got {value!r}")
    return int(value)


def _check_logits_lengths(logits, logits_len) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, T, C) float, logits_len (B,) long)`` on the logits' device, after
    the checks every entry point taking logits makes (ranks, dtypes, batch-first, lengths
    in [0, T]); ``logits_len`` None means every frame. The decoders call it too
    (ctc_decoder.py), so a mistake reads the same whichever function it reaches. One host
    read."""
    logits = _as_tensor(logits, "logits")
    _check_float(logits, "logits", 3, "(B, T, C)")
    batch, frames = logits.shape[:2]
    if logits_len is None:
        return logits, torch.full((batch,), frames, dtype=torch.long, device=logits.device)
    logits_len = _as_tensor(logits_len, "logits_len", logits.device)
    _check_int(logits_len, "logits_len", 1, "(B,)")
    _check_batch_first(logits, logits_len.shape[0], "logits_len")
    _check_batch(batch, logits_len=logits_len)
    _check_lengths(logits_len, "logits_len", frames, "time axis of logits")
    return logits, logits_len.long()


def _check_label_ids(labels: torch.Tensor, labels_len: torch.Tensor, num_classes: int,
                     name: str = "labels") -> None:
    """Every label id in a valid position must name a class of the logits."""
    if labels.numel() == 0:
        return
    valid = torch.arange(labels.shape[1], device=labels.device) < labels_len[:, None]
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        b, j = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} holds id {int(labels[b, j])} at example {b}, position {j}, outside "
            f"[0, {num_classes - 1}] for logits with C={num_classes} classes "
            "(to_blank_augmented_labels raises ids >= blank_index by one, so raw ids "
            "must be below C - 1)"
        )


# ----------------------------------------------------------------------------------
# The mirrored functions, in the order of the original module.
# ----------------------------------------------------------------------------------
def to_blank_augmented_labels(inputs: dict[str, torch.Tensor], blank_index: int = 0,
                              boundary_blanks: bool = True,
                              update_non_blank_token_index: bool = True, *,
                              num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """Interleaves blanks into padded label sequences.

    Args:
      inputs: ``{"SEQ_DATA": (B, U) int, "SEQ_LEN": (B,) int}``, raw label ids padded
        past each length (the padding values are ignored).
      blank_index: the blank's class id. Every raw id ``>= blank_index`` is raised by
        one to make room for it, so raw ids live in ``[0, C - 2]``.
      boundary_blanks: also put a blank before the first and after the last label.
      update_non_blank_token_index: True (the TF original's behaviour) raises ids
        ``>= blank_index`` by one. False keeps the ids as given: they are already
        class ids that leave room for the blank, so none may equal ``blank_index``.
        This 4th positional argument comes from the course author's PyTorch port,
        so code written against it runs here.
      num_classes: keyword-only, ``C`` including the blank. When given, a
        ``blank_index`` or a raw id that has no class once shifted is an error here
        rather than later (the original has no such check).

    Returns:
      ``{"SEQ_DATA": (B, 2U + 1), "SEQ_LEN": (B,)}`` with boundary blanks, or
      ``(B, 2U - 1)`` and lengths ``2 * len - 1`` without (0 for an empty label).
      Positions past each new length hold 0, whatever the blank is (as the
      original). Both keep their input's integer dtype, except that int8, uint8
      and int16 widen to int32, so that shifted ids and ``2U + 1`` cannot overflow.
    """
    if not isinstance(inputs, dict) or SEQ_DATA not in inputs or SEQ_LEN not in inputs:
        raise TypeError('inputs must be a dict {"SEQ_DATA": (B, U) int, "SEQ_LEN": (B,) int}')
    if isinstance(blank_index, bool) or not isinstance(blank_index, (int, np.integer)):
        if not (torch.is_tensor(blank_index) and blank_index.dim() == 0
                and not blank_index.dtype.is_floating_point):
            raise TypeError(f"blank_index must be an int, got {type(blank_index).__name__}")
    blank_index = int(blank_index)
    if blank_index < 0:
        raise ValueError(f"blank_index must be >= 0 (a class id), got {blank_index}")
    if num_classes is not None and blank_index >= num_classes:
        raise ValueError(f"blank_index {blank_index} is outside the vocabulary "
                         f"[0, {num_classes - 1}] (num_classes={num_classes})")
    labels = _as_tensor(inputs[SEQ_DATA], 'inputs["SEQ_DATA"]')
    lengths = _as_tensor(inputs[SEQ_LEN], 'inputs["SEQ_LEN"]', labels.device)
    _check_int(labels, 'inputs["SEQ_DATA"]', 2, "(B, U)")
    _check_int(lengths, 'inputs["SEQ_LEN"]', 1, "(B,)")
    _check_batch(labels.shape[0], **{'inputs["SEQ_LEN"]': lengths})
    _check_lengths(lengths, 'inputs["SEQ_LEN"]', labels.shape[1], "label axis")
    batch, width = labels.shape
    valid = torch.arange(width, device=labels.device) < lengths[:, None]  # (B, U)
    if bool((valid & (labels < 0)).any()):
        b, u = (int(i) for i in (valid & (labels < 0)).nonzero()[0])
        raise ValueError(f'inputs["SEQ_DATA"] holds a negative label id {int(labels[b, u])} '
                         f"at example {b}, position {u}")

    if not update_non_blank_token_index:
        found = _first(valid & (labels == blank_index))
        if found is not None:
            b, u = found
            raise ValueError(f'inputs["SEQ_DATA"] holds the blank id {blank_index} at example '
                             f"{b}, position {u}; with update_non_blank_token_index=False the "
                             "ids are class ids and must leave the blank out")
        limit = num_classes
    else:
        limit = None if num_classes is None else num_classes - 1
    found = None if limit is None else _first(valid & (labels >= limit))
    if found is not None:
        b, u = found
        kind = "raw label id" if update_non_blank_token_index else "label id"
        raise ValueError(f"{kind} {int(labels[b, u])} at example {b}, position {u} has no "
                         f"class: ids must be below {limit} for C={num_classes}"
                         + (" (ids >= blank_index are raised by one to make room for it)"
                            if update_non_blank_token_index else ""))

    # int8 would turn the shifted id 127 into -128, and 2U + 1 overflows it at U = 64.
    label_dtype, len_dtype = _wide_int(labels.dtype), _wide_int(lengths.dtype)
    shifted = labels.to(label_dtype)  # (B, U)
    if update_non_blank_token_index:
        shifted = shifted + (shifted >= blank_index).to(label_dtype)
    out, new_len = _interleave_blanks(shifted, lengths.long(), blank_index, boundary_blanks)
    return {SEQ_DATA: out, SEQ_LEN: new_len.to(len_dtype)}


def _wide_int(dtype: torch.dtype) -> torch.dtype:
    """int32 and int64 stay; narrower integer dtypes widen to int32."""
    return dtype if dtype in (torch.int32, torch.int64) else torch.int32


def _interleave_blanks(labels: torch.Tensor, lengths: torch.Tensor, blank: int,
                       boundary_blanks: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ids ``(B, U)`` to ``blank l1 blank l2 ... blank`` ``(B, 2U + 1)``, 0-padded."""
    batch, width = labels.shape
    if boundary_blanks:
        out_width, first, new_len = 2 * width + 1, 1, 2 * lengths + 1
    else:
        out_width, first, new_len = max(2 * width - 1, 0), 0, (2 * lengths - 1).clamp(min=0)
    out = torch.full((batch, out_width), blank, dtype=labels.dtype, device=labels.device)
    out[:, first::2] = labels[:, : (out_width - first + 1) // 2]
    out = torch.where(torch.arange(out_width, device=labels.device) < new_len[:, None],
                      out, torch.zeros((), dtype=out.dtype, device=out.device))
    return out, new_len


def calculate_initial_log_seq_prob(label_len: torch.Tensor, *,
                                   max_label_len: int | None = None,
                                   dtype: torch.dtype = torch.float32
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-domain start and end state vectors.

    Args:
      label_len: ``(B,)`` blank-augmented label lengths.
      max_label_len: keyword-only, width ``L`` of the result; defaults to
        ``max(label_len)`` as in the original.
      dtype: keyword-only, floating dtype of the result (float32 as the original).

    Returns:
      ``(log_start, log_end)``, each ``(B, L)``: 0 at state 0 (start) or at state
      ``label_len - 1`` (end), ``LOG_0`` elsewhere.
    """
    label_len = _as_tensor(label_len, "label_len")
    _check_int(label_len, "label_len", 1, "(B,)")
    width = int(label_len.max()) if max_label_len is None else int(max_label_len)
    states = torch.arange(width, device=label_len.device)  # (L,)
    zero = torch.zeros((), dtype=dtype, device=label_len.device)
    log_zero = torch.full((), LOG_0, dtype=dtype, device=label_len.device)
    log_start = torch.where(states == 0, zero, log_zero).expand(label_len.shape[0], width)
    log_end = torch.where(states == label_len[:, None] - 1, zero, log_zero)
    return log_start.contiguous(), log_end


def calculate_log_label_prob(labels: torch.Tensor, softmax_output: torch.Tensor) -> torch.Tensor:
    """``log(softmax_output)`` gathered at every augmented label.

    Args:
      labels: ``(B, L)`` integer blank-augmented labels.
      softmax_output: ``(B, T, C)`` per-frame class probabilities.

    Returns:
      ``(B, T, L)`` log-probabilities, in the dtype of ``softmax_output``. As in the
      original, a zero probability gives ``-inf``; ``ctc_loss`` avoids this by
      using ``log_softmax`` on the logits instead.
    """
    labels = _as_tensor(labels, "labels")
    softmax_output = _as_tensor(softmax_output, "softmax_output")
    _check_int(labels, "labels", 2, "(B, L)")
    _check_float(softmax_output, "softmax_output", 3, "(B, T, C)")
    _check_batch(labels.shape[0], softmax_output=softmax_output)
    labels = labels.to(softmax_output.device)
    full_len = torch.full((labels.shape[0],), labels.shape[1], device=labels.device)
    _check_label_ids(labels, full_len, softmax_output.shape[2])
    batch, frames, _ = softmax_output.shape
    index = labels.long()[:, None, :].expand(batch, frames, labels.shape[1])  # (B, T, L)
    return torch.log(softmax_output).gather(2, index)


def label_trans_table(labels: torch.Tensor, labels_len: torch.Tensor) -> torch.Tensor:
    """The log-domain state transition table of the CTC graph.

    Args:
      labels: ``(B, L')`` integer blank-augmented labels, ``L' >= max(labels_len)``.
      labels_len: ``(B,)`` augmented lengths.

    Returns:
      ``(B, L, L)`` float32 with ``L = max(labels_len)``: 0 where the step from state
      ``i`` to state ``j`` is allowed (``j == i``, ``j == i + 1``, and ``j == i + 2``
      unless ``labels[i] == labels[i + 2]``, which forbids skipping the blank between
      repeated labels and skipping from blank to blank), ``LOG_0`` elsewhere. Like
      the original, the rule is applied to the padding too.
    """
    labels = _as_tensor(labels, "labels")
    labels_len = _as_tensor(labels_len, "labels_len", labels.device)
    _check_int(labels, "labels", 2, "(B, L)")
    _check_int(labels_len, "labels_len", 1, "(B,)")
    _check_batch(labels.shape[0], labels_len=labels_len)
    _check_lengths(labels_len, "labels_len", labels.shape[1], "label axis")
    width = int(labels_len.max()) if labels_len.numel() else 0
    labels = labels[:, :width]  # (B, L): wider padding is trimmed, as if never there
    states = torch.arange(width, device=labels.device)
    step = states[None, :] - states[:, None]  # (L, L): j - i
    skip_ok = torch.zeros(labels.shape[0], width, width, dtype=torch.bool, device=labels.device)
    if width > 2:
        differs = labels[:, :-2] != labels[:, 2:]  # (B, L - 2): may state i skip to i + 2?
        skip_ok[:, states[:-2], states[2:]] = differs
    allowed = (step == 0) | (step == 1) | skip_ok  # (B, L, L)
    return torch.where(allowed, torch.zeros((), device=labels.device),
                       torch.full((), LOG_0, device=labels.device)).to(torch.float32)


def _calculate_unnormalized_log_seq_prob(gamma: torch.Tensor,
                                         accum_log_seq_prob_sum: torch.Tensor,
                                         logit_len: torch.Tensor,
                                         label_len: torch.Tensor) -> torch.Tensor:
    """The original's sequence log-probability from per-frame normalised alpha.

    The assignment names this helper of :func:`calculate_alpha_beta`; the arguments
    are those of the course author's port.

    Args:
      gamma: ``(B, T, L)`` log alpha, shifted at every frame so its largest state is 0.
      accum_log_seq_prob_sum: ``(B, T)`` running sum of those per-frame shifts: the
        unnormalised log alpha at frame ``t`` is ``gamma[:, t] + accum[:, t]``.
      logit_len: ``(B,)`` valid frames ``T_b``.
      label_len: ``(B,)`` augmented label lengths ``L_b >= 1``.

    Returns:
      ``(B,)``: the larger of ``gamma`` at frame ``T_b - 1`` in states ``L_b - 1`` and
      ``L_b - 2`` (the one state twice when ``L_b == 1``), plus the running sum at
      that frame. A max where the exact likelihood has a log-sum-exp, as the original.
      With ``T_b == 0`` it reads the start vector (0 in state 0) and a sum of 0, where
      the original would index frame -1.
    """
    batch, _, width = gamma.shape
    logit_len, label_len = logit_len.long(), label_len.long()
    log_start, _ = calculate_initial_log_seq_prob(label_len, max_label_len=width,
                                                  dtype=gamma.dtype)
    # The start vector and a zero sum stand for the frame before t = 0, so frame
    # T_b - 1 is index T_b of the padded views.
    padded_gamma = torch.cat([log_start[:, None], gamma], dim=1)  # (B, T + 1, L)
    padded_sum = torch.nn.functional.pad(accum_log_seq_prob_sum, (1, 0))  # (B, T + 1)
    last = padded_gamma[torch.arange(batch, device=gamma.device), logit_len]  # (B, L)
    end_state = (label_len - 1).clamp(min=0)[:, None]
    before_end = (label_len - 2).clamp(min=0)[:, None]
    log_final = torch.maximum(last.gather(1, end_state), last.gather(1, before_end))[:, 0]
    return log_final + padded_sum.gather(1, logit_len[:, None])[:, 0]


def calculate_alpha_beta(label_trans_table: torch.Tensor, log_label_prob: torch.Tensor,
                         label_len: torch.Tensor, logit_len: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward and backward variables of CTC, renormalised at every frame.

    This mirrors the original exactly, numbers included, for any ``(B, L, L)`` table
    (not only the banded ones ``label_trans_table`` builds). ``ctc_loss`` does not
    call it: it uses a banded recursion with the same gradient at linear cost.

    Args:
      label_trans_table: ``(B, L, L)`` log-domain transitions, ``[b, i, j]`` for i -> j.
      log_label_prob: ``(B, T, L)`` log-probability of each state's label per frame.
      label_len: ``(B,)`` augmented label lengths ``L_b``.
      logit_len: ``(B,)`` valid frame counts ``T_b``.

    Returns:
      ``(alpha, beta, log_seq_prob_final)``: ``alpha`` and ``beta`` are ``(B, T, L)``.
      ``alpha[b, t]`` is the log forward variable (label probabilities of frames up to
      and including ``t``) and ``beta[b, t]`` the log backward variable (frames after
      ``t`` only), each shifted so that its largest state is 0. As in the original,
      the backward pass restarts from the end vector at every padded frame, and
      entries of padded frames and states have ``LOG_0`` added once for each
      (about -706.89, -1413.79 or -2120.68). ``log_seq_prob_final`` is ``(B,)``: the
      larger of the two final states at frame ``T_b - 1`` plus the summed
      normalisers (the original's approximation of the log-likelihood; a max where
      the exact value has a log-sum-exp). With ``T_b == 0`` it reads the start vector.

    Departures: time padding past ``max(logit_len)`` and label padding past
    ``max(label_len)`` are accepted (the original assumes both are exact), and the
    computation runs in float64 when ``log_label_prob`` is float64.
    """
    table = _as_tensor(label_trans_table, "label_trans_table")
    log_label_prob = _as_tensor(log_label_prob, "log_label_prob", table.device)
    label_len = _as_tensor(label_len, "label_len", table.device)
    logit_len = _as_tensor(logit_len, "logit_len", table.device)
    _check_float(table, "label_trans_table", 3, "(B, L, L)")
    _check_float(log_label_prob, "log_label_prob", 3, "(B, T, L)")
    _check_int(label_len, "label_len", 1, "(B,)")
    _check_int(logit_len, "logit_len", 1, "(B,)")
    batch, frames, width = log_label_prob.shape
    _check_batch(batch, label_trans_table=table, label_len=label_len, logit_len=logit_len)
    if table.shape[1:] != (width, width):
        raise ValueError(f"label_trans_table must have shape (B, L, L) with L={width} to match "
                         f"log_label_prob, got {tuple(table.shape)}")
    _check_lengths(label_len, "label_len", width, "label axis of log_label_prob")
    _check_lengths(logit_len, "logit_len", frames, "time axis of log_label_prob")
    if batch and int(label_len.min()) < 1:
        raise ValueError("label_len must be >= 1 (an augmented label has at least one blank)")

    dtype = torch.promote_types(log_label_prob.dtype, torch.float32)
    table = table.to(dtype)
    log_p = log_label_prob.to(dtype)  # (B, T, L)
    log_start, log_end = calculate_initial_log_seq_prob(label_len, max_label_len=width, dtype=dtype)
    t_max = int(logit_len.max()) if batch else 0

    # Forward pass: the start vector acts as a virtual frame before t = 0.
    alpha = log_p.new_empty(batch, frames, width)  # (B, T, L)
    log_norm = log_p.new_zeros(batch, frames + 1)  # (B, T + 1): summed normalisers
    carry = log_start  # (B, L)
    for t in range(frames):
        x = torch.logsumexp(carry[:, :, None] + table, dim=1) + log_p[:, t]  # (B, L)
        n = x.amax(dim=1)  # (B,)
        carry = x - n[:, None]
        alpha[:, t] = carry
        log_norm[:, t + 1] = log_norm[:, t] + n

    # Read before any output masking, as the original does.
    log_seq_prob_final = _calculate_unnormalized_log_seq_prob(alpha, log_norm[:, 1:],
                                                              logit_len, label_len)

    # Backward pass: beta[t] reads the label probabilities of frame t + 1, and 0 at the
    # last frame of the (trimmed) time axis, then restarts at every padded frame.
    frame_ok = torch.arange(frames, device=table.device)[None, :] < logit_len[:, None]  # (B, T)
    beta = log_p.new_empty(batch, frames, width)
    carry = log_end
    for t in range(frames - 1, -1, -1):
        z = carry + log_p[:, t + 1] if t + 1 < t_max else carry  # (B, L)
        y = torch.logsumexp(table + z[:, None, :], dim=2)  # (B, L)
        y = y - y.amax(dim=1, keepdim=True)
        carry = torch.where(frame_ok[:, t, None], y, log_end)
        beta[:, t] = carry

    # Output masking, added in the original's order so the float32 rounding matches.
    state_ok = torch.arange(width, device=table.device)[None, :] < label_len[:, None]  # (B, L)
    frame_pad = torch.where(frame_ok, 0.0, LOG_0).to(dtype)[:, :, None]
    state_pad = torch.where(state_ok, 0.0, LOG_0).to(dtype)[:, None, :]
    alpha = alpha + frame_pad + state_pad
    beta = beta + frame_pad + state_pad
    return alpha, beta, log_seq_prob_final


# ----------------------------------------------------------------------------------
# The loss: a banded forward-backward in the log domain with an analytic gradient.
# ----------------------------------------------------------------------------------
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _log_add3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log(exp(a) + exp(b) + exp(c)), safe where all three are -inf."""
    return torch.logaddexp(torch.logaddexp(a, b), c)


def _forward_pass(log_p: torch.Tensor, skip_in: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised log alpha over the CTC band (Graves et al. 2006, eq. 6-7).

    Args:
      log_p: ``(B, T, L)`` log-probability of each state's label, ``-inf`` on padded
        states and 0 on padded frames (so padded frames change nothing finite).
      skip_in: ``(B, L)`` 0 where state ``j`` may be entered from ``j - 2``, else -inf.

    Returns:
      ``log_alpha`` ``(B, T, L)`` shifted per frame so its largest state is 0, and the
      shifts ``log_norm`` ``(B, T)``; the unnormalised value is their sum so far.
    """
    batch, frames, width = log_p.shape
    log_alpha = log_p.new_empty(batch, frames, width)
    log_norm = log_p.new_empty(batch, frames)
    # Two leading -inf columns stand for the states before state 0, so stay, advance
    # and skip are three shifted views of one buffer.
    buf = log_p.new_full((batch, width + 2), -math.inf)  # (B, L + 2)
    buf[:, 2:3] = 0.0  # the start: state 0 before the first frame (if there are states)
    for t in range(frames):
        x = _log_add3(buf[:, 2:], buf[:, 1:-1], buf[:, :-2] + skip_in) + log_p[:, t]  # (B, L)
        n = x.amax(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).min)  # (B, 1)
        torch.sub(x, n, out=log_alpha[:, t])
        log_norm[:, t] = n[:, 0]
        buf[:, 2:] = log_alpha[:, t]
    return log_alpha, log_norm


def _backward_pass(log_p: torch.Tensor, skip_in: torch.Tensor, log_end: torch.Tensor,
                   logit_len: torch.Tensor) -> torch.Tensor:
    """Normalised log beta over the CTC band (Graves et al. 2006, eq. 10-11).

    ``log_beta[b, t, i]`` is the log-probability of frames ``t + 1 .. T_b - 1`` given
    state ``i`` at frame ``t``, shifted per frame so its largest state is 0. It starts
    from ``log_end`` (``(B, L)``: 0 at the two final states) at frame ``T_b - 1``.
    """
    batch, frames, width = log_p.shape
    log_beta = log_p.new_empty(batch, frames, width)
    # Two trailing -inf columns stand for the states after the last one.
    buf = log_p.new_full((batch, width + 2), -math.inf)  # (B, L + 2)
    skip_out = torch.full_like(skip_in, -math.inf)  # (B, L): may state i skip to i + 2?
    skip_out[:, :-2] = skip_in[:, 2:]
    restart = (torch.arange(frames, device=log_p.device)[:, None]
               >= (logit_len - 1)[None, :])[:, :, None]  # (T, B, 1)
    for t in range(frames - 1, -1, -1):
        if t + 1 < frames:
            buf[:, :width] += log_p[:, t + 1]  # beta and emission of frame t + 1
            y = _log_add3(buf[:, :width], buf[:, 1:-1], buf[:, 2:] + skip_out)
            y = y - y.amax(dim=1, keepdim=True).clamp(min=torch.finfo(y.dtype).min)
            y = torch.where(restart[t], log_end, y)
        else:
            y = log_end
        log_beta[:, t] = y
        buf[:, :width] = y
    return log_beta


class CtcLoss(torch.autograd.Function):
    """Per-example CTC loss with an analytic gradient, as the original's custom gradient.

    ``CtcLoss.apply(labels, labels_len, logits, logits_len, exact=False,
    zero_infinity=False)`` takes the same arguments as :func:`ctc_loss` (the options
    positionally) and returns the same ``(B,)`` loss. The gradient with respect to
    ``logits`` is ``softmax(logits) - gamma`` times the incoming per-example
    gradient, where ``gamma[b, t, c]`` is the posterior probability of the states
    labelled ``c`` at frame ``t``. It is zero on padded frames and for examples whose
    loss is not counted: ``logits_len < labels_len`` in the original's mode,
    infeasible examples in exact mode. An example with a NaN or +inf logit in a valid
    frame gets a NaN loss and a NaN gradient on its valid frames, in every mode.
    Labels and lengths get no gradient. (:func:`ctc_loss` runs the same computation
    as a ``torch.library`` operator where one is registered, for ``torch.compile``.)
    """

    @staticmethod
    def forward(ctx, labels, labels_len, logits, logits_len, exact=False, zero_infinity=False):
        labels, labels_len, logits, logits_len = _as_ctc_tensors(labels, labels_len, logits,
                                                                 logits_len)
        # Whether logits need a gradient: then a backend that can runs beta beside alpha.
        loss, *saved = _loss_forward(labels, labels_len, logits, logits_len, exact,
                                     zero_infinity, keep_beta=ctx.needs_input_grad[2])
        ctx.exact = bool(exact)
        ctx.save_for_backward(logits, labels, labels_len, logits_len, *saved)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        logits, labels, labels_len, logits_len, *saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a gradient that has a graph
            grad = _second_order_gradient(grad_loss, logits, labels, labels_len, logits_len,
                                          saved[2], saved[3], ctx.exact)
            return None, None, grad, None, None, None
        grad = _loss_backward(grad_loss, labels, labels_len, logits_len, *saved)
        return None, None, grad.to(logits.dtype), None, None, None


def _as_ctc_tensors(labels, labels_len, logits, logits_len):
    """``ctc_loss``'s arguments as tensors on the logits' device (array-likes too)."""
    if not torch.is_tensor(logits):
        logits = _as_tensor(logits, "logits")
    device = logits.device
    return (_as_tensor(labels, "labels", device), _as_tensor(labels_len, "labels_len", device),
            logits, _as_tensor(logits_len, "logits_len", device))


def _clean_labels(labels: torch.Tensor, labels_len: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` int64 labels with the ids past each length (padding such as -100)
    replaced by 0: any class id will do there, and the backends may gather it."""
    state_ok = torch.arange(labels.shape[1], device=labels.device)[None, :] < labels_len[:, None]
    return torch.where(state_ok, labels.long(), 0).contiguous()


def _loss_forward(labels, labels_len, logits, logits_len, exact: bool, zero_infinity: bool,
                  keep_beta: bool = False):
    """The loss's forward pass: input checks, then the backend on the padded axes.

    Returns ``(loss (B,), log_probs (B, T, C), state, counted (B,), poisoned (B,))``:
    the loss in float32 (float64 for float64 logits) and what the backward pass
    needs. ``state`` is alpha ``(B, T, L)``, or, with ``keep_beta`` on a backend that
    runs the two recursions side by side (Triton), alpha and beta ``(2, B, T, L)``
    (:func:`_state_shape`). Shapes follow the inputs', never their lengths' values, so
    an operator can declare them without reading the data.
    """
    fused = _kernel_loss_forward(labels, labels_len, logits, logits_len, exact, zero_infinity)
    if fused is not None:
        return fused
    labels, labels_len, logits, logits_len = _check_ctc_inputs(
        labels, labels_len, logits, logits_len, warn_infeasible=exact and not zero_infinity)
    compute = _compute_dtype(logits.dtype)
    run = _select_backend(logits.device, compute, labels.shape[1])
    labels_len, logits_len = labels_len.long().contiguous(), logits_len.long().contiguous()
    # A backend that can runs beta beside alpha when a gradient will be asked for.
    extra = {"keep_beta": True} if keep_beta and run.precomputes_beta else {}
    # Autocast must not lower the recursion's precision: it is float32 or float64.
    with torch.autocast(logits.device.type, enabled=False):
        if run.fuses_wrapper:
            # Kernels for log_softmax and the loss; they never read padded labels.
            labels = labels.long().contiguous()
            log_probs, bad_frames = run.log_softmax(logits, logits_len)  # (B, T, C), (B, T)
            (alpha,), final_a, final_b = run.forward(log_probs, labels, labels_len, logits_len,
                                                     **extra)
            loss, counted, poisoned = run.finish_loss(final_a, final_b, bad_frames, labels_len,
                                                      logits_len, exact, zero_infinity)
            return loss, log_probs, alpha, counted, poisoned
        labels = _clean_labels(labels, labels_len)  # (B, L)
        log_probs = torch.log_softmax(logits.to(compute), dim=2).contiguous()  # (B, T, C)
        (alpha,), final_a, final_b = run.forward(log_probs, labels, labels_len, logits_len,
                                                 **extra)
        poisoned = _poisoned(log_probs, logits_len)
    if exact:
        # Graves et al. 2006, eq. 8: p(l|x) sums the two final states.
        log_like = torch.logaddexp(final_a, final_b)
        # Infeasible (T_b < U + repeats) leaves -inf: the loss is inf, or 0 with
        # zero_infinity; either way the gradient is 0, never NaN.
        counted = torch.isfinite(log_like) & ~poisoned
        loss = torch.where(counted, -log_like, 0.0 if zero_infinity else math.inf)
    else:
        log_like = torch.maximum(final_a, final_b)  # the original's approximation
        # The original's rule: an example counts only when T_b >= L_b (= 2U + 1).
        counted = (logits_len >= labels_len) & ~poisoned
        loss = torch.where(counted, -log_like, 0.0)
    # float16 and bfloat16 give a float32 loss, as the native CTC does under autocast:
    # a long utterance's loss (> 65504) would overflow float16.
    loss = torch.where(poisoned, math.nan, loss)
    return loss, log_probs, alpha, counted, poisoned


def _cpu_kernel():
    """The C kernel where the backend choice allows it on CPU tensors, else None: the
    same choice as :func:`_select_backend`'s, without its device and dtype steps."""
    if os.environ.get("SEQ_LOSS_UTIL_BACKEND", "auto") not in ("auto", "c-kernel"):
        return None
    return _kernel_backend()


def _kernel_loss_forward(labels, labels_len, logits, logits_len, exact: bool,
                         zero_infinity: bool):
    """``_loss_forward``'s result from one C call (checks, log-softmax, recursion and
    loss) where it applies: CPU tensors of the right ranks and batch size, no checks
    deferred by a caller, a small float32 batch (``KernelBackend.loss_forward``).
    None otherwise, and where a check fails: the general path then names the fault."""
    if not (torch.is_tensor(logits) and torch.is_tensor(labels) and torch.is_tensor(labels_len)
            and torch.is_tensor(logits_len) and logits.dim() == 3 and labels.dim() == 2
            and labels_len.dim() == 1 and logits_len.dim() == 1):
        return None
    batch = logits.shape[0]
    if not (labels.shape[0] == labels_len.shape[0] == logits_len.shape[0] == batch
            and logits.device.type == labels.device.type == labels_len.device.type
            == logits_len.device.type == "cpu") or _DEFERRED.get():
        return None
    kernel = _cpu_kernel()
    if kernel is None:
        return None
    return kernel.loss_forward(logits, labels, labels_len, logits_len, exact, zero_infinity,
                               check=labels is not _PRECHECKED.get())


def _state_shape(logits: torch.Tensor, labels: torch.Tensor, keep_beta: bool) -> tuple:
    """The shape of :func:`_loss_forward`'s state for these inputs, from shapes alone."""
    batch, frames, _ = logits.shape
    width = labels.shape[1]
    run = _select_backend(logits.device, _compute_dtype(logits.dtype), width)
    if keep_beta and run.precomputes_beta:
        return (2, batch, frames, width)
    return (batch, frames, width)


def _loss_backward(grad_loss, labels, labels_len, logits_len, log_probs, alpha, counted,
                   poisoned) -> torch.Tensor:
    """d loss / d logits ``(B, T, C)`` in the compute dtype, for an incoming ``(B,)``
    gradient; the inputs are ``_loss_forward``'s and what it returned."""
    if log_probs.device.type == "cpu":
        kernel = _cpu_kernel()
        grad = None if kernel is None else kernel.loss_backward(
            log_probs, labels, labels_len, logits_len, alpha, counted, poisoned, grad_loss)
        if grad is not None:
            return grad
    labels_len, logits_len = labels_len.long().contiguous(), logits_len.long().contiguous()
    with torch.autocast(log_probs.device.type, enabled=False):
        run = _select_backend(log_probs.device, log_probs.dtype, labels.shape[1])
        if alpha.dim() == 4 and not run.precomputes_beta:
            alpha = alpha[0]  # beta was kept for a backend no longer selected
        if run.fuses_wrapper:  # the scale is made in a kernel, from its pieces
            return run.backward((alpha,), log_probs, labels.long().contiguous(), labels_len,
                                logits_len, grad_loss, counted, poisoned)
        labels = _clean_labels(labels, labels_len)
        grad_loss = grad_loss.to(log_probs.dtype)
        # Examples whose loss is not counted get exactly 0, whatever their posterior. A
        # poisoned one gets a NaN scale, which every backend carries to each valid frame
        # (padded frames stay 0), so NaN costs no pass of its own.
        scale = torch.where(counted, grad_loss, 0.0)  # (B,)
        scale = torch.where(poisoned & (grad_loss != 0), math.nan, scale)
        return run.backward((alpha,), log_probs, labels, labels_len, logits_len, scale)


def _check_operator_inputs(log_probs, labels, labels_len, logits_len):
    """The checks of the operators that take log-probabilities and blank-augmented
    labels (``ctc_viterbi``, ``ctc_loss_backward``), run before any backend reads memory
    through them. This module's own calls pass inputs it has checked; a direct call, or
    one from a compiled graph whose Python checks were traced away, must never reach C
    (or Triton) with an id past C or a length past its axis. ``ctc_loss``'s checks, with
    its messages, plus the compute dtypes the kernels are built for. Returns the tensors
    contiguous, lengths int64 (the labels' padding is left to the caller, which cleans it
    where its backend reads it)."""
    if not torch.is_tensor(log_probs):
        raise TypeError(f"log_probs must be a tensor (B, T, C), got {type(log_probs).__name__}")
    if log_probs.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"log_probs must be float32 or float64 (B, T, C), the dtypes the "
                        f"kernels compute in, got {log_probs.dtype}")
    labels, labels_len, log_probs, logits_len = _check_ctc_inputs(labels, labels_len,
                                                                  log_probs, logits_len)
    return (log_probs.contiguous(), labels, labels_len.long().contiguous(),
            logits_len.long().contiguous())


def _checked_viterbi(log_probs, labels, labels_len, logits_len):
    """The ``ctc_viterbi`` operator: ``(path (B, T), score (B,))`` after its checks."""
    log_probs, labels, labels_len, logits_len = _check_operator_inputs(
        log_probs, labels, labels_len, logits_len)
    run = _select_backend(log_probs.device, log_probs.dtype, labels.shape[1])
    return run.viterbi(log_probs, _clean_labels(labels, labels_len), labels_len, logits_len)


def _checked_loss_backward(grad_loss, labels, labels_len, logits_len, log_probs, alpha,
                           counted, poisoned) -> torch.Tensor:
    """The ``ctc_loss_backward`` operator: :func:`_loss_backward` after checking every
    input against the others (the state must be the forward's for these shapes)."""
    log_probs, labels, labels_len, logits_len = _check_operator_inputs(
        log_probs, labels, labels_len, logits_len)
    batch, frames, _ = log_probs.shape
    state = (batch, frames, labels.shape[1])
    for name, x in (("grad_loss", grad_loss), ("alpha", alpha), ("counted", counted),
                    ("poisoned", poisoned)):
        if not torch.is_tensor(x):
            raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
        if x.device != log_probs.device:
            raise ValueError(f"{name} is on {x.device}, log_probs on {log_probs.device}: "
                             "every input must be on one device")
    if tuple(alpha.shape) not in (state, (2, *state)) or alpha.dtype != log_probs.dtype:
        raise ValueError(f"alpha must be the forward's state, {log_probs.dtype} of shape "
                         f"{state} or {(2, *state)} for these inputs, got {alpha.dtype} of "
                         f"shape {tuple(alpha.shape)}")
    _check_float(grad_loss, "grad_loss", 1, "(B,)")
    for name, x in (("grad_loss", grad_loss), ("counted", counted), ("poisoned", poisoned)):
        if tuple(x.shape) != (batch,):
            raise ValueError(f"{name} must have shape ({batch},), got {tuple(x.shape)}")
    for name, x in (("counted", counted), ("poisoned", poisoned)):
        if x.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor (B,), got dtype {x.dtype}")
    return _loss_backward(grad_loss.contiguous(), labels, labels_len, logits_len, log_probs,
                          alpha.contiguous(), counted, poisoned)


_NO_SECOND_DERIVATIVE = (
    "ctc_loss's default mode (the TF original's) has no second derivative: its gradient "
    "is the exact CTC gradient, of the log-sum-exp of the two final states, not the "
    "derivative of the loss it returns, their max. For create_graph=True use "
    "ctc_loss(..., exact=True) or CtcLossModule (exact by default).")


def _exact_nll_differentiable(logits, labels, labels_len, logits_len) -> torch.Tensor:
    """``(B,)`` exact CTC negative log-likelihood from out-of-place differentiable ops
    only, so autograd can differentiate it twice: the unnormalised log-alpha recursion
    (Graves et al. 2006, eq. 6-8). log 0 is a large finite number rather than -inf,
    whose log-sum-exp would have a NaN derivative; every example must be feasible."""
    batch, frames, _ = logits.shape
    width = labels.shape[1]
    log_probs = torch.log_softmax(logits.to(_compute_dtype(logits.dtype)), dim=2)
    log_zero = -1e30
    emit, skip_in = _band(log_probs, labels, labels_len)  # (B, T, L), (B, L)
    states = torch.arange(width, device=logits.device)
    state_ok = states[None, :] < labels_len[:, None]  # (B, L)
    emit = torch.where(state_ok[:, None, :], emit, log_zero)
    skip_ok = skip_in == 0  # (B, L): may state j be entered from j - 2?
    fill = log_probs.new_full((batch, 2), log_zero)
    log_alpha = torch.where(states == 0, 0.0, log_zero).to(log_probs.dtype).expand(batch, width)
    for t in range(frames):
        advance = torch.cat([fill[:, :1], log_alpha[:, :-1]], dim=1)
        skip = torch.where(skip_ok, torch.cat([fill, log_alpha[:, :-2]], dim=1)[:, :width],
                           log_zero)
        step = torch.logsumexp(torch.stack([log_alpha, advance, skip]), dim=0) + emit[:, t]
        step = torch.where(state_ok, step, log_zero)
        log_alpha = torch.where((t < logits_len)[:, None], step, log_alpha)  # (B, L)
    last = log_alpha.gather(1, (labels_len - 1)[:, None])[:, 0]
    before = log_alpha.gather(1, (labels_len - 2).clamp(min=0)[:, None])[:, 0]
    before = torch.where(labels_len >= 2, before, log_zero)
    # logsumexp, not logaddexp: logaddexp's second derivative is inf / inf (NaN) when
    # one argument is log 0 and the other is not.
    return -torch.logsumexp(torch.stack([last, before]), dim=0)


def _second_order_gradient(grad_loss, logits, labels, labels_len, logits_len, counted,
                           poisoned, exact: bool) -> torch.Tensor:
    """d loss / d logits ``(B, T, C)`` as a differentiable function of ``logits`` and
    ``grad_loss``, for ``create_graph=True``: autograd through a recomputation of the
    exact loss, on the counted examples only (the others get 0, poisoned ones NaN).
    First-order calls never come here, so training keeps the kernels' speed."""
    if not exact:
        raise RuntimeError(_NO_SECOND_DERIVATIVE)
    labels = _clean_labels(labels, labels_len)
    labels_len, logits_len = labels_len.long(), logits_len.long()
    keep = counted.nonzero()[:, 0]
    grad = torch.zeros_like(logits)
    if keep.numel():
        with torch.enable_grad():
            nll = _exact_nll_differentiable(logits[keep], labels[keep], labels_len[keep],
                                            logits_len[keep])
            (grad,) = torch.autograd.grad(nll, logits, grad_outputs=grad_loss[keep].to(nll.dtype),
                                          create_graph=True)
    frames = torch.arange(logits.shape[1], device=logits.device)
    nan_rows = (poisoned & (grad_loss != 0))[:, None] & (frames[None, :] < logits_len[:, None])
    return torch.where(nan_rows[:, :, None], math.nan, grad)


def _bad_frames(log_probs: torch.Tensor, logits_len: torch.Tensor) -> torch.Tensor:
    """``(B, T')`` bool, the valid frames whose log_softmax holds a NaN: a NaN or +inf
    logit, or only -inf ones (no class possible). A single -inf (a masked class) leaves
    none, so a frame's sum over classes is NaN exactly then. One pass over ``(B, T', C)``,
    no host read. The loss carries such examples as NaN (:func:`_poisoned`); the
    decoders refuse them (ctc_decoder.py)."""
    frames = torch.arange(log_probs.shape[1], device=log_probs.device)
    frame_ok = frames[None, :] < logits_len[:, None]  # (B, T')
    return torch.isnan(log_probs.sum(2)) & frame_ok


def _poisoned(log_probs: torch.Tensor, logits_len: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool, the examples with a bad valid frame (:func:`_bad_frames`): what it
    finds is carried as NaN, never read on the host."""
    return _bad_frames(log_probs, logits_len).any(1)


def _warn_if_infeasible(feasible: torch.Tensor, labels_len: torch.Tensor,
                        logits_len: torch.Tensor) -> None:
    """Names the examples that have no alignment (exact mode, loss inf)."""
    if bool(feasible.all()):
        return
    bad = (~feasible).nonzero()[:, 0].tolist()
    shown = ", ".join(f"{b} ({int(logits_len[b])} frames, {(int(labels_len[b]) - 1) // 2} "
                      "labels)" for b in bad[:8])
    more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
    _warn(f"{len(bad)} example(s) cannot be aligned, so their CTC loss is inf: {shown}{more}. "
          "An example needs at least U + (adjacent repeats) frames. Check the frame lengths "
          "(logits_len) or pass zero_infinity=True to give them loss 0.")


def _band(log_probs, labels, labels_len):
    """Per-state emissions and skips of the CTC band, shared by every PyTorch pass.

    Returns ``log_p`` ``(B, T', L)``, each state's label log-probability per frame
    (-inf on padded states, which can never be occupied), and ``skip_in`` ``(B, L)``,
    0 where state ``j`` may be entered from ``j - 2`` (a label state, odd, whose label
    differs: a gap holding the wildcard differs from the blank, and is never skipped
    into), else -inf.
    """
    batch, t_max, _ = log_probs.shape
    width = labels.shape[1]
    state_ok = torch.arange(width, device=log_probs.device)[None, :] < labels_len[:, None]
    log_p = log_probs.gather(2, labels[:, None, :].expand(batch, t_max, width))
    log_p = torch.where(state_ok[:, None, :], log_p, -math.inf)
    skip_in = log_probs.new_full((batch, width), -math.inf)
    if width > 2:
        odd = torch.arange(2, width, device=log_probs.device) % 2 == 1
        skip_in[:, 2:] = torch.where((labels[:, 2:] != labels[:, :-2]) & odd, 0.0, -math.inf)
    return log_p, skip_in


def _frame_band(log_probs, labels, labels_len, logits_len):
    """:func:`_band` with padded frames emitting log 1: returns ``frame_ok`` (B, T'),
    ``log_p`` (B, T', L) and ``skip_in`` (B, L). Select, never multiply, so alpha stays
    finite and unused on padded frames whatever the logits hold there."""
    frames = torch.arange(log_probs.shape[1], device=log_probs.device)
    frame_ok = frames[None, :] < logits_len[:, None]  # (B, T')
    log_p, skip_in = _band(log_probs, labels, labels_len)
    return frame_ok, torch.where(frame_ok[:, :, None], log_p, 0.0), skip_in


class _TorchBackend:
    """Pure PyTorch, vectorised over batch and states, one Python loop over time.
    Runs on any device; the compiled kernel replaces it on CPU when available."""

    name = "pytorch"
    precomputes_beta = False  # beta is recomputed in the backward
    fuses_wrapper = False  # the checks, log_softmax and the loss are the ATen ops here

    @staticmethod
    def forward(log_probs, labels, labels_len, logits_len):
        """Returns ``(state for backward, final_a, final_b)``: the unnormalised log
        alpha ``(B,)`` of the last state and of the one before it (-inf if L_b == 1) at
        frame ``T_b - 1``; with ``T_b == 0``, the start vector's."""
        batch, t_max, _ = log_probs.shape
        width = labels.shape[1]
        device = log_probs.device
        frame_ok, log_p, skip_in = _frame_band(log_probs, labels, labels_len, logits_len)
        log_alpha, log_norm = _forward_pass(log_p, skip_in)

        # The start vector stands for the frame before t = 0, read when T_b == 0.
        alpha_last = log_p.new_full((batch, width), -math.inf)  # (B, L)
        alpha_last[:, :1] = 0.0
        if t_max:
            last = log_alpha[torch.arange(batch, device=device), (logits_len - 1).clamp(min=0)]
            alpha_last = torch.where((logits_len > 0)[:, None], last, alpha_last)
        # The shifts summed in float64, as the kernels do: in float32 a long utterance's
        # loss would drift by ~1e-6 of itself.
        total = torch.where(frame_ok, log_norm, 0.0).sum(dim=1, dtype=torch.float64)  # (B,)
        end_state = (labels_len - 1).clamp(min=0)[:, None]
        final_a = (alpha_last.gather(1, end_state)[:, 0] + total).to(log_p.dtype)
        final_b = (alpha_last.gather(1, (end_state - 1).clamp(min=0))[:, 0] + total).to(log_p.dtype)
        final_b = torch.where(labels_len >= 2, final_b, -math.inf)
        return (log_alpha,), final_a, final_b

    @staticmethod
    def backward(state, log_probs, labels, labels_len, logits_len, scale):
        """d loss / d logits ``(B, T', C)`` times ``scale`` ``(B,)``; 0 on padded frames
        and wherever ``scale`` is 0. ``state`` is forward's ``(log_alpha,)``; the band
        is gathered again rather than kept alive between the passes."""
        (log_alpha,) = state
        _, log_p, skip_in = _frame_band(log_probs, labels, labels_len, logits_len)
        batch, t_max, width = log_p.shape
        device = log_p.device
        states = torch.arange(width, device=device)
        log_end = torch.where((states == labels_len[:, None] - 1)
                              | (states == labels_len[:, None] - 2), 0.0, -math.inf)
        log_end = log_end.to(log_p.dtype)  # (B, L): the two final states (one if L_b == 1)
        log_beta = _backward_pass(log_p, skip_in, log_end, logits_len)

        # Posterior of each state per frame (Graves et al. 2006, eq. 14), normalised
        # per frame as the original does, then summed per class.
        log_gamma = log_alpha + log_beta  # (B, T', L)
        m = log_gamma.amax(dim=2, keepdim=True).clamp(min=torch.finfo(log_gamma.dtype).min)
        # The normaliser is a running sum in state order (its last entry), as the C
        # kernel's loop: padded states add exactly 0, so the gradient does not depend on
        # how wide the label axis is padded. logsumexp's vectorised sum pairs the states
        # differently for each width (6e-8 apart at float32).
        total = (log_gamma - m).exp().cumsum(dim=2)[:, :, -1:]  # (B, T', 1)
        log_gamma = log_gamma - (m + total.log())
        index = labels[:, None, :].expand(batch, t_max, width)
        grad = log_probs.exp().scatter_add(2, index, -log_gamma.exp())  # (B, T', C)
        frame_ok = torch.arange(t_max, device=device)[None, :] < logits_len[:, None]
        keep = frame_ok & (scale != 0)[:, None]  # (B, T')
        return torch.where(keep[:, :, None], grad * scale[:, None, None], 0.0)

    @staticmethod
    def viterbi(log_probs, labels, labels_len, logits_len):
        """The most probable alignment: ``path`` (B, T') states (-1 past T_b or where
        none exists) and ``score`` (B,) its log-probability. Ties prefer stay, then
        advance, as the kernel."""
        batch, t_max, _ = log_probs.shape
        width = labels.shape[1]
        device = log_probs.device
        frame_ok = torch.arange(t_max, device=device)[None, :] < logits_len[:, None]
        log_p, skip_in = _band(log_probs, labels, labels_len)

        back = torch.zeros(batch, t_max, width, dtype=torch.uint8, device=device)
        buf = log_p.new_full((batch, width + 2), -math.inf)  # two leading -inf states
        buf[:, 2:3] = 0.0  # the start: state 0 before the first frame (if there are states)
        for t in range(t_max):
            candidates = torch.stack([buf[:, 2:], buf[:, 1:-1], buf[:, :-2] + skip_in], dim=1)
            best, choice = candidates.max(dim=1)  # (B, L); the first maximum on ties
            back[:, t] = choice.to(torch.uint8)
            # Padded frames leave the scores as they were at frame T_b - 1.
            buf[:, 2:] = torch.where(frame_ok[:, t, None], best + log_p[:, t], buf[:, 2:])

        final = buf[:, 2:]  # (B, L) at frame T_b - 1: the start vector if T_b == 0
        end = (labels_len - 1).clamp(min=0)
        end_score = final.gather(1, end[:, None])[:, 0]
        before_score = final.gather(1, (end - 1).clamp(min=0)[:, None])[:, 0]
        use_before = (labels_len >= 2) & (before_score > end_score)
        state = torch.where(use_before, end - 1, end)
        score = torch.where(use_before, before_score, end_score)
        path = torch.full((batch, t_max), -1, dtype=torch.long, device=device)
        found = torch.isfinite(score)
        for t in range(t_max - 1, -1, -1):
            active = (t < logits_len) & found
            path[:, t] = torch.where(active, state, -1)
            step = back[:, t].gather(1, state[:, None])[:, 0].long()
            state = torch.where(active, state - step, state)
        return path, score


# ----------------------------------------------------------------------------------
# Backends. The pure PyTorch one above runs on any device. The accelerated ones live
# in the private package _seq_loss_kernels beside this module, installed with it: a
# compiled C kernel for CPU tensors and Triton kernels for CUDA tensors. Without the
# package (this file copied alone) the PyTorch backend runs everywhere.
# ----------------------------------------------------------------------------------
try:
    import _seq_loss_kernels
except ImportError:
    _seq_loss_kernels = None  # type: ignore[assignment]

_BACKEND_CHOICES = ("auto", "c-kernel", "triton", "pytorch")


def _kernel_backend():
    """The compiled CPU backend, or None (no package, SEQ_LOSS_UTIL_KERNEL=0, or no
    compiler)."""
    if _seq_loss_kernels is None or os.environ.get("SEQ_LOSS_UTIL_KERNEL", "1") == "0":
        return None
    from _seq_loss_kernels import cpu

    return cpu.backend()


def _triton_backend(device_type: str):
    """The Triton backend for CUDA tensors, or for CPU tensors under Triton's
    interpreter (``TRITON_INTERPRET=1``); None without the package or triton."""
    if _seq_loss_kernels is None:
        return None
    if device_type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return None
    from _seq_loss_kernels import triton_ctc

    return triton_ctc.backend()


def _select_backend(device, dtype: torch.dtype = torch.float32, width: int = 0):
    """The backend for ``dtype`` log-probabilities with ``width`` states on ``device``.

    ``SEQ_LOSS_UTIL_BACKEND`` chooses: "auto" (the default: the C kernel on CPU, Triton
    on CUDA, else PyTorch), "c-kernel", "triton" (on CPU tensors only with
    TRITON_INTERPRET=1) or "pytorch". The Triton kernels compute in float32 and hold up
    to 4096 states; float64, or more states, runs the PyTorch backend instead."""
    choice = os.environ.get("SEQ_LOSS_UTIL_BACKEND", "auto")
    if choice not in _BACKEND_CHOICES:
        raise ValueError(f"SEQ_LOSS_UTIL_BACKEND must be one of {_BACKEND_CHOICES}, "
                         f"got {choice!r}")
    kind = torch.device(device).type
    if choice == "triton" or (choice == "auto" and kind == "cuda"):
        found = _triton_backend(kind)
        if found is not None:
            return found if found.supports(dtype, width) else _TorchBackend
        if choice == "triton":
            raise RuntimeError("SEQ_LOSS_UTIL_BACKEND=triton needs the triton package and, "
                               "for CPU tensors, TRITON_INTERPRET=1 set before triton is "
                               "imported")
    if choice in ("auto", "c-kernel") and kind == "cpu":
        found = _kernel_backend()
        if found is not None:
            return found
        if choice == "c-kernel":
            raise RuntimeError("SEQ_LOSS_UTIL_BACKEND=c-kernel, but the compiled kernel is "
                               "unavailable (see the warning that said why)")
    return _TorchBackend


def backend(device="cpu") -> str:
    """Which implementation runs on ``device``: "c-kernel", "triton" or "pytorch"."""
    return _select_backend(device).name


def _warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside this module and torch."""
    import sys
    import types
    import warnings

    inside = (os.path.abspath(__file__), os.path.dirname(os.path.abspath(torch.__file__)))
    frame: types.FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and (frame.f_code.co_filename == inside[0]
                                 or frame.f_code.co_filename.startswith(inside[1])):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _check_batch_first(logits: torch.Tensor, batch: int, source: str) -> None:
    """A batch size that matches the logits' second axis means time-first logits."""
    if logits.shape[0] != batch and logits.dim() == 3 and logits.shape[1] == batch:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)}, which looks time-first (T, B, C) for "
            f"the batch of {batch} in {source}: logits must be batch-first (B, T, C); pass "
            "logits.transpose(0, 1) (torch.nn.CTCLoss takes (T, B, C), this module does not)")


def _probability_suspects(logits: torch.Tensor, logits_len: torch.Tensor) -> torch.Tensor:
    """A 0-dim bool: no negative score in the first frame of any example with frames.
    Logits and log-probabilities almost always have one; :func:`_looks_like_probabilities`
    then checks the rest only for the few inputs that pass. Reads ``(B, C)``."""
    if logits.shape[1] == 0:
        return torch.zeros((), dtype=torch.bool, device=logits.device)
    first = torch.where((logits_len > 0)[:, None], logits[:, 0], 0.5)  # (B, C)
    return first.amin() >= 0


def _looks_like_probabilities(logits: torch.Tensor, logits_len: torch.Tensor) -> bool:
    """There are valid frames, and every one lies in [0, 1] and sums to 1 (to 1e-2, for
    float16 softmax)."""
    x = logits.float()  # (B, T, C)
    frame_ok = torch.arange(x.shape[1], device=x.device)[None, :] < logits_len[:, None]
    is_prob = ((x >= 0) & (x <= 1)).all(2) & ((x.sum(2) - 1).abs() < 1e-2)  # (B, T)
    return bool((is_prob | ~frame_ok).all() & frame_ok.any())


_PROBABILITY_WARNING = (
    "logits look like probabilities (every valid entry in [0, 1], each frame summing to "
    "1): the loss applies log_softmax itself, so softmax outputs give a plausible loss "
    "that does not train (every frame drifts to the blank). Pass the model's logits, "
    "before softmax, or log-probabilities (log_softmax), which give the same loss.")


def _warn_if_probabilities(logits, logits_len, suspect) -> None:
    if suspect and _looks_like_probabilities(logits, logits_len):
        _warn(_PROBABILITY_WARNING)


def _augmentation_faults(labels: torch.Tensor, positions: torch.Tensor,
                         valid: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` bool, True where labels are not blank-augmented: each example's even
    positions (``valid`` ones) must all hold the batch's blank, its first id, and no
    odd position may."""
    holds_blank = labels == labels[:1, :1]  # the blank: position 0 of example 0
    return valid & (holds_blank != (positions % 2 == 0))


def _check_augmented(labels, faults) -> None:
    b, j = (int(i) for i in faults.nonzero()[0])
    blank = int(labels[0, 0])
    if j % 2 == 0:
        what = (f"labels are not blank-augmented: the even positions, where the blank "
                f"belongs, hold {blank} (example 0, position 0) but {int(labels[b, j])} at "
                f"example {b}, position {j}")
    else:
        what = (f"labels are not blank-augmented: example {b}, position {j} (odd, where a "
                f"label belongs) holds the blank's id {blank}")
    raise ValueError(
        f"{what}. ctc_loss takes blank-augmented labels (blank, l1, blank, ..., blank) of "
        "length 2U + 1: pass raw labels through to_blank_augmented_labels first, or use "
        "CtcLossModule, which takes raw labels")


_DEFERRED: contextvars.ContextVar = contextvars.ContextVar("seq_loss_util_deferred",
                                                           default=())


class _deferring:
    """While active, the next :func:`_check_ctc_inputs` also reads these deferred
    ``(verdict, fail)`` checks (see :func:`_prepare_batch_first`), first."""

    def __init__(self, checks):
        self.checks = tuple(checks)

    def __enter__(self):
        self.token = _DEFERRED.set(self.checks)

    def __exit__(self, *exc):
        _DEFERRED.reset(self.token)


# The blank-augmented labels that CtcLossModule's fused preparation (Triton) built and
# checked, so the loss it calls does not check them again.
_PRECHECKED: contextvars.ContextVar = contextvars.ContextVar("seq_loss_util_prechecked",
                                                            default=None)


def _check_ctc_inputs(labels, labels_len, logits, logits_len, warn_infeasible=False):
    """Validates ``ctc_loss``'s arguments with one host sync in the common case.

    Returns them as tensors on the logits' device. The checks' verdicts, and those
    deferred by the caller (:class:`_deferring`), are gathered into one tensor and read
    once; the detailed (slower) checks run only to name a fault. With
    ``warn_infeasible``, the same read also tells whether an example has fewer frames
    than its labels need (U + adjacent repeats), and a warning names them.
    """
    if labels is not None and labels is _PRECHECKED.get():
        return labels, labels_len, logits, logits_len
    deferred = _DEFERRED.get()
    if not torch.is_tensor(logits):
        logits = _as_tensor(logits, "logits")
    _check_float(logits, "logits", 3, "(B, T, C)")
    device = logits.device
    labels = _as_tensor(labels, "labels", device)
    labels_len = _as_tensor(labels_len, "labels_len", device)
    logits_len = _as_tensor(logits_len, "logits_len", device)
    _check_int(labels, "labels", 2, "(B, L)")
    _check_int(labels_len, "labels_len", 1, "(B,)")
    _check_int(logits_len, "logits_len", 1, "(B,)")
    _check_batch_first(logits, labels.shape[0], "labels")
    _check_batch(logits.shape[0], labels=labels, labels_len=labels_len, logits_len=logits_len)
    if logits.shape[2] < 1:
        raise ValueError("logits must have at least one class (C >= 1)")
    if logits.shape[0] == 0:
        return labels, labels_len, logits, logits_len
    if not deferred and device.type == "cpu":
        # The C kernel makes the checks below in one pass; on any fault (or a first
        # frame that looks like probabilities) they run to name it.
        kernel = _kernel_backend()
        if kernel is not None and kernel.verdict_passes(
                kernel.check_augmented(labels, labels_len, logits, logits_len),
                warn_infeasible):
            return labels, labels_len, logits, logits_len

    width_in = labels.shape[1]
    positions = torch.arange(width_in, device=device)
    valid = positions < labels_len[:, None]  # (B, L)
    bad_ids = valid & ((labels < 0) | (labels >= logits.shape[2]))
    faults = _augmentation_faults(labels, positions, valid) if width_in else valid
    feasible = None
    if warn_infeasible:
        # Feasible when T_b >= U + adjacent repeats (a repeat is a label equal to the
        # one two states before it, at an odd position).
        odd = (positions % 2 == 1)[None, :]
        repeats = torch.zeros_like(labels_len)
        if width_in > 2:
            repeats = ((labels[:, 2:] == labels[:, :-2]) & valid[:, 2:] & odd[:, 2:]).sum(1)
        feasible = logits_len >= (labels_len - 1) // 2 + repeats
    verdicts = torch.stack([
        labels_len.min(), labels_len.max(), logits_len.min(), logits_len.max(),
        (labels_len % 2 == 0).any(), bad_ids.any(), faults.any(),
        _probability_suspects(logits, logits_len),
        *([] if feasible is None else [~feasible.all()]),
        *[verdict for verdict, _ in deferred]]).tolist()  # the one host sync
    low_u, width, low_t, t_max, even, ids, not_augmented, suspect = verdicts[:8]
    rest = verdicts[8:]
    infeasible = rest.pop(0) if feasible is not None else False
    for failed, (_, fail) in zip(rest, deferred, strict=True):
        if failed:
            fail()  # the caller's own checks come first, as if made before the loss
    if low_u < 0 or width > width_in:
        _check_lengths(labels_len, "labels_len", width_in, "label axis of labels")
    if low_t < 0 or t_max > logits.shape[1]:
        _check_lengths(logits_len, "logits_len", logits.shape[1], "time axis of logits")
    if even:
        b = int((labels_len % 2 == 0).nonzero()[0])
        raise ValueError(
            f"labels_len must be odd (2U + 1: labels blank-augmented with boundary blanks, "
            f"see to_blank_augmented_labels), got {int(labels_len[b])} for example {b}")
    if ids:
        _check_label_ids(labels, labels_len, logits.shape[2])
    if not_augmented:
        _check_augmented(labels, faults)
    _warn_if_probabilities(logits, logits_len, suspect)
    if infeasible:
        _warn_if_infeasible(feasible, labels_len, logits_len)
    return labels, labels_len, logits, logits_len


def ctc_loss(labels: torch.Tensor, labels_len: torch.Tensor, logits: torch.Tensor,
             logits_len: torch.Tensor, *, exact: bool = False,
             zero_infinity: bool = False) -> torch.Tensor:
    """Per-example CTC loss: the original's numbers by default, the exact loss on request.

    Args:
      labels: ``(B, L)`` integer blank-augmented labels with boundary blanks, as
        :func:`to_blank_augmented_labels` returns them; padding past each length is
        ignored.
      labels_len: ``(B,)`` augmented lengths ``2U + 1``.
      logits: ``(B, T, C)`` unnormalised scores; C includes the blank. Any float
        dtype: float64 computes in float64, the others in float32.
      logits_len: ``(B,)`` valid frame counts; frames past them are ignored,
        whatever they hold.
      exact: keyword-only. False (the default) keeps the original's loss: minus the
        larger of the two final states' log forward variables (not their log-sum-exp,
        so at or above the exact value by at most log 2), and 0 for examples with
        ``logits_len < labels_len`` even where an alignment exists. True gives the
        exact CTC negative log-likelihood, as ``torch.nn.functional.ctc_loss`` on
        ``log_softmax(logits)``. An example is feasible when
        ``logits_len >= U + (number of adjacent repeated labels)``; an infeasible one
        gets an ``inf`` loss.
      zero_infinity: keyword-only, with ``exact``: infeasible examples get loss 0.

    Returns:
      ``(B,)`` loss in the dtype of ``logits``. The gradient (see :class:`CtcLoss`) is
      the exact CTC gradient in both modes, so in the default mode it is not the
      derivative of the returned loss (as in the original). It is 0 for examples whose
      loss is not counted: masked ones by default, infeasible ones in exact mode. For
      those, ``torch.nn.functional.ctc_loss`` returns NaN unless ``zero_infinity``.

    Raises:
      TypeError: a non-integer label or length tensor, or non-float logits.
      ValueError: wrong ranks, batch sizes that disagree, a negative length or one
        larger than its padded axis, an even ``labels_len``, or a label id outside
        ``[0, C - 1]``.
    """
    if _OPS is None or not _compiling():
        # Eager: the autograd Function, which runs the same code as the operator. An
        # operator call imports torch._dynamo, and with it triton, whose native library
        # crashes a process that loaded TensorFlow first (the side-by-side comparison).
        return CtcLoss.apply(labels, labels_len, logits, logits_len, bool(exact),
                             bool(zero_infinity))
    labels, labels_len, logits, logits_len = _as_ctc_tensors(labels, labels_len, logits,
                                                             logits_len)
    keep_beta = torch.is_grad_enabled() and logits.requires_grad
    return _OPS.ctc_loss(labels, labels_len, logits, logits_len, bool(exact),
                         bool(zero_infinity), keep_beta)[0]


# ----------------------------------------------------------------------------------
# A training-ready module with the usual PyTorch interface.
# ----------------------------------------------------------------------------------
_REDUCTIONS = ("mean", "sum", "none")


class CtcLossModule(torch.nn.Module):
    """CTC loss as a ``torch.nn.Module``, batch-first, for training (e.g. Hugging Face).

    ``forward(logits (B, T, C), labels (B, U), logits_len=None, labels_len=None)``:

    * ``labels`` are raw label ids. With ``labels_len=None`` they are padded at the
      end with any negative value (Hugging Face uses -100); otherwise positions past
      ``labels_len`` are ignored, whatever they hold. 1-D labels with ``labels_len``
      are read as ``torch.nn.CTCLoss``'s concatenated targets.
    * ``logits_len=None`` means every frame is valid.

    Options (all keyword-only):

    * ``blank`` (0): the blank's class id.
    * ``shift_labels`` (False): label ids are already class ids and must differ from
      ``blank``, as with a Hugging Face tokenizer whose pad token is the blank. True
      uses the original's convention instead: ids ``>= blank`` are raised by one.
    * ``reduction`` ("mean"): "mean" divides each loss by its target length (at least
      1) and averages over the batch, as ``torch.nn.CTCLoss``; "sum"; or "none" for
      the ``(B,)`` losses.
    * ``zero_infinity`` (False): infeasible examples get loss 0 instead of ``inf``.
    * ``exact`` (True): the exact CTC negative log-likelihood. False gives the TF
      original's approximation (see :func:`ctc_loss`).
    * ``wildcard`` (None): an id (>= C) that marks a wildcard in ``labels``: any run of
      frames, none included, where the transcript is partial (Star-CTC, W-CTC): each
      frame of its gap is the blank (at the model's odds) or the wildcard (at
      ``wildcard_score``, 0, whatever the model says; such frames add no gradient).
      Exact mode only. See :func:`forced_align`.

    The loss is float32 for float16 and bfloat16 logits (float64 for float64), so
    reductions never overflow; the gradient comes back in the logits' dtype. An empty
    batch gives 0 for every reduction. Gradients are 0 for infeasible examples (named
    in a warning unless ``zero_infinity``); an example with a NaN or +inf logit in a
    valid frame gets a NaN loss and gradient, never a silent 0.
    """

    def __init__(self, *, blank: int = 0, shift_labels: bool = False,
                 reduction: str = "mean", zero_infinity: bool = False, exact: bool = True,
                 wildcard: int | None = None, wildcard_score: float = 0.0):
        super().__init__()
        _check_wildcard(wildcard, wildcard_score)
        if wildcard is not None and not exact:
            raise ValueError("a wildcard needs exact=True: the original's approximation "
                             "has no wildcard")
        self.wildcard = None if wildcard is None else int(wildcard)
        self.wildcard_score = float(wildcard_score)
        if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)) or blank < 0:
            raise ValueError(f"blank must be a class id >= 0, got {blank!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.blank = int(blank)
        self.shift_labels = bool(shift_labels)
        self.reduction = reduction
        self.zero_infinity = bool(zero_infinity)
        self.exact = bool(exact)

    def extra_repr(self) -> str:
        wildcard = (f", wildcard={self.wildcard}, wildcard_score={self.wildcard_score}"
                    if self.wildcard is not None else "")
        return (f"blank={self.blank}, shift_labels={self.shift_labels}, "
                f"reduction={self.reduction!r}, zero_infinity={self.zero_infinity}, "
                f"exact={self.exact}{wildcard}")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor,
                logits_len: torch.Tensor | None = None,
                labels_len: torch.Tensor | None = None) -> torch.Tensor:
        if self.wildcard is not None:  # checked as it is prepared (a few host reads)
            aug, aug_len, logits, logits_len, target_len = _prepare_batch_first(
                logits, labels, logits_len, labels_len, self.blank, self.shift_labels,
                wildcard=self.wildcard, wildcard_score=self.wildcard_score)
            loss = _wildcard_loss(aug, aug_len, logits, logits_len, self.blank,
                                  self.wildcard_score, zero_infinity=self.zero_infinity)
            return self._reduce(loss, target_len)
        fused = self._fused(logits, labels, logits_len, labels_len)
        if fused is not None:
            return fused
        deferred: list = []
        aug, aug_len, logits, logits_len, target_len = _prepare_batch_first(
            logits, labels, logits_len, labels_len, self.blank, self.shift_labels, deferred)
        # Read with the loss's own checks: one host read. (None while compiling.)
        with _deferring(deferred) if deferred else contextlib.nullcontext():
            loss = ctc_loss(aug, aug_len, logits, logits_len, exact=self.exact,
                            zero_infinity=self.zero_infinity)  # (B,)
        return self._reduce(loss, target_len)

    def _reduce(self, loss: torch.Tensor, target_len: torch.Tensor) -> torch.Tensor:
        if self.reduction == "none":
            return loss
        if self.reduction == "sum" or loss.shape[0] == 0:
            return loss.sum()  # an empty batch: 0 with a zero gradient, not mean()'s NaN
        return (loss / target_len.clamp(min=1).to(loss.dtype)).mean()

    def _fused(self, logits, labels, logits_len, labels_len) -> torch.Tensor | None:
        """The loss through a backend that prepares and checks the labels in one kernel
        (Triton): one host read and a handful of launches per call. None where it does
        not apply, or where a check fails: the general path then names the fault (or
        warns), with the same messages on every backend."""
        if _compiling() or not _plain_batch(logits, labels, logits_len, labels_len):
            return None
        batch, _, classes = logits.shape
        if not batch or self.blank >= classes:
            return None
        run = _select_backend(logits.device, _compute_dtype(logits.dtype),
                              2 * labels.shape[1] + 1)
        if not run.fuses_wrapper:
            return None
        aug, aug_len, frames, norm, verdict = run.prepare_batch_first(
            logits, labels, logits_len, labels_len, self.blank, self.shift_labels)
        bits = int(verdict.item())  # the one host read of the training step
        if not run.verdict_passes(bits, self.exact and not self.zero_infinity):
            return None
        token = _PRECHECKED.set(aug)
        try:
            loss = ctc_loss(aug, aug_len, logits, frames, exact=self.exact,
                            zero_infinity=self.zero_infinity)  # (B,)
        finally:
            _PRECHECKED.reset(token)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return (loss / norm).mean()


def _plain_batch(logits, labels, logits_len, labels_len) -> bool:
    """Inputs whose ranks, dtypes, batch sizes and devices are right (host-side facts):
    the fused path takes these; anything else goes the general way, which explains."""
    if not (torch.is_tensor(logits) and logits.dim() == 3 and logits.dtype.is_floating_point):
        return False

    def integer(x, ndim):
        return (torch.is_tensor(x) and x.dim() == ndim and x.shape[0] == logits.shape[0]
                and x.device == logits.device and x.dtype != torch.bool
                and not x.dtype.is_floating_point and not x.dtype.is_complex)

    return integer(labels, 2) and all(x is None or integer(x, 1)
                                      for x in (logits_len, labels_len))


def _compiling() -> bool:
    """True while torch.compile traces: host reads would break the graph there, so
    the batch-first checks that need them are skipped (the loss operator still checks
    its inputs when it runs)."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return compiler.is_compiling()
    return False  # torch < 2.3: nothing of ours is traced there without operators


def _split_concatenated(targets: torch.Tensor, labels_len, logits) -> torch.Tensor:
    """torch.nn.CTCLoss's other target format: every example's labels one after the
    other, ``(sum(labels_len),)``, to ``(B, U)`` padded with -1."""
    if labels_len is None:
        raise ValueError("1-D labels are read as concatenated targets (torch.nn.CTCLoss's "
                         "format) and need labels_len, each example's length")
    labels_len = _as_tensor(labels_len, "labels_len", logits.device)
    _check_int(labels_len, "labels_len", 1, "(B,)")
    _check_batch_first(logits, labels_len.shape[0], "labels_len")
    _check_batch(logits.shape[0], labels_len=labels_len)
    _check_lengths(labels_len, "labels_len", targets.shape[0], "concatenated targets")
    total = int(labels_len.sum())
    if total != targets.shape[0]:
        raise ValueError(f"1-D concatenated labels hold {targets.shape[0]} ids, but labels_len "
                         f"sums to {total}: they must agree")
    width = int(labels_len.max()) if labels_len.numel() else 0
    starts = torch.cumsum(labels_len, 0) - labels_len  # (B,)
    index = starts[:, None] + torch.arange(width, device=targets.device)  # (B, U)
    inside = torch.arange(width, device=targets.device) < labels_len[:, None]
    gathered = targets[index.clamp(max=max(total - 1, 0))] if total else index
    return torch.where(inside, gathered, -1).to(targets.dtype)


def _prepare_batch_first(logits, labels, logits_len, labels_len, blank, shift_labels,
                         deferred: list | None = None, wildcard: int | None = None,
                         wildcard_score: float = 0.0):
    """Checks batch-first inputs, as CtcLossModule and forced_align take them.

    Returns ``(aug, aug_len, logits, logits_len, labels_len)``: blank-augmented labels
    ``(B, 2U + 1)`` and their lengths, and the frame and raw label lengths (filled in
    where None was given). With ``wildcard`` (an id >= C), that id in ``labels`` is a
    wildcard: it is taken out of the labels, and the blank of the gap it stood in
    (before the first label, between two, after the last) becomes class C, the column
    :func:`_wildcard_logits` appends; ``labels_len`` then counts the other labels.
    While torch.compile traces, the checks that read values are skipped (the loss
    operator checks the blank-augmented labels when it runs).

    With ``deferred`` (a list), the checks that read values are appended to it as
    ``(verdict, fail)`` pairs instead of read here: a 0-dim bool tensor, True when the
    check fails, and a function that raises the check's error. The loss reads them
    with its own (:func:`_deferring`), so a training step reads the device once.
    """
    # forced_align and alignment_targets check even while compiling (a graph break, and
    # the eager messages): only the training module defers to the loss operator.
    checking = deferred is None or not _compiling()

    def check(verdict, fail):
        if deferred is not None:
            deferred.append((verdict, fail))
        elif bool(verdict):
            fail()
    if not torch.is_tensor(logits):
        raise TypeError(f"logits must be a tensor (B, T, C), got {type(logits).__name__}")
    _check_float(logits, "logits", 3, "(B, T, C)")
    batch, frames, classes = logits.shape
    if blank >= classes:
        raise ValueError(f"blank {blank} is outside the vocabulary [0, {classes - 1}] "
                         f"of logits with C={classes} classes")
    _check_wildcard(wildcard, wildcard_score, classes)
    labels = _as_tensor(labels, "labels", logits.device)
    if labels.dim() == 1 and labels.dtype != torch.bool and not labels.dtype.is_floating_point:
        labels = _split_concatenated(labels, labels_len, logits)
    _check_int(labels, "labels", 2, "(B, U), or 1-D concatenated targets with labels_len")
    _check_batch_first(logits, labels.shape[0], "labels")
    _check_batch(batch, labels=labels)
    width = labels.shape[1]
    positions = torch.arange(width, device=logits.device)
    if labels_len is None:
        present = labels >= 0  # (B, U)
        labels_len = present.sum(dim=1)
        gaps = present != (positions < labels_len[:, None])

        def padding_before_a_label(gaps=gaps):
            b = _first(gaps)[0]
            raise ValueError(f"labels of example {b} has a negative (padding) id before a "
                             "label id: pad only at the end, or pass labels_len")

        if checking and width:
            check(gaps.any(), padding_before_a_label)
    else:
        labels_len = _as_tensor(labels_len, "labels_len", logits.device)
        _check_int(labels_len, "labels_len", 1, "(B,)")
        _check_batch(batch, labels_len=labels_len)
        if checking and batch:
            check((labels_len < 0).any() | (labels_len > width).any(),
                  lambda: _check_lengths(labels_len, "labels_len", width, "label axis of labels"))
    if logits_len is None:
        logits_len = torch.full((batch,), frames, dtype=torch.long, device=logits.device)
    else:
        logits_len = _as_tensor(logits_len, "logits_len", logits.device)
        _check_int(logits_len, "logits_len", 1, "(B,)")
        _check_batch(batch, logits_len=logits_len)
        # Deferred, the loss's own check of logits_len (the same message) covers it.
        if checking and deferred is None:
            _check_lengths(logits_len, "logits_len", frames, "time axis of logits")

    valid = positions < labels_len[:, None]
    labels = torch.where(valid, labels, 0).long()
    star = valid & (labels == wildcard) if wildcard is not None else None
    if shift_labels:
        bad = valid & ((labels < 0) | (labels >= classes - 1))
        rule = f"raw ids in [0, {classes - 2}] (ids >= blank are raised by one)"
    else:
        bad = valid & ((labels < 0) | (labels >= classes) | (labels == blank))
        rule = f"class ids in [0, {classes - 1}] other than the blank {blank}"
    if star is not None:
        bad = bad & ~star
        rule += f", or the wildcard {wildcard}"

    def bad_id(labels=labels, bad=bad):
        b, j = _first(bad)
        raise ValueError(f"labels holds id {int(labels[b, j])} at example {b}, position "
                         f"{j}; expected {rule} for logits with C={classes} classes")

    if checking and bad.numel():
        check(bad.any(), bad_id)
    if star is not None:
        labels, labels_len, gaps = _take_out_wildcards(labels, valid, star)
    if shift_labels:
        labels = labels + (labels >= blank).long()
    aug, aug_len = _interleave_blanks(labels, labels_len.long(), blank)
    if star is not None:
        aug[:, 0::2] = torch.where(gaps, classes, aug[:, 0::2])
    return aug, aug_len, logits, logits_len, labels_len


def _take_out_wildcards(labels, valid, star):
    """``(labels, labels_len, gaps)``: the labels less the wildcards, moved up ``(B, U)``;
    their count ``(B,)``; and ``(B, U + 1)`` whether a wildcard stood in each gap: before
    the first label, between two, after the last (several in one gap are one)."""
    batch, width = labels.shape
    real = valid & ~star
    before = real.long().cumsum(1) - real.long()  # real labels before each position
    out = labels.new_zeros(batch, width + 1)  # the last column takes what is dropped
    out.scatter_(1, torch.where(real, before, width), labels)
    gaps = torch.zeros(batch, width + 2, dtype=torch.bool, device=labels.device)
    gaps.scatter_(1, torch.where(star, before, width + 1), True)
    return out[:, :width], real.sum(1), gaps[:, :width + 1]


def _check_wildcard(wildcard, wildcard_score, classes: int | None = None) -> None:
    """A wildcard id must name no class (>= C; negative ids are padding), and its
    per-frame score must be a finite number."""
    if wildcard is None:
        return
    if isinstance(wildcard, bool) or not isinstance(wildcard, (int, np.integer)):
        raise TypeError(f"wildcard must be an int id (>= C, the number of classes), got "
                        f"{type(wildcard).__name__}")
    if wildcard < 0:
        raise ValueError(f"wildcard id {wildcard} cannot mark a wildcard: a negative id is "
                         "padding; use an id >= C, such as C itself")
    if classes is not None and wildcard < classes:
        raise ValueError(f"wildcard id {wildcard} cannot mark a wildcard: it collides with a "
                         f"real class of logits with C={classes} classes (ids 0 to "
                         f"{classes - 1}); use an id >= C, such as C itself ({classes})")
    if isinstance(wildcard_score, bool) or not isinstance(
            wildcard_score, (int, float, np.integer, np.floating)) or not math.isfinite(
            wildcard_score):
        raise ValueError(f"wildcard_score must be a finite number (a log-score per frame), "
                         f"got {wildcard_score!r}")


def _wildcard_logits(logits: torch.Tensor, logits_len: torch.Tensor, blank: int,
                     wildcard_score: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, shift)``: the logits ``(B, T, C + 1)`` with a wildcard column whose
    log_softmax is ``log(p_blank + exp(wildcard_score))`` (a gap frame is the blank, at
    the model's odds, or the wildcard, at ``wildcard_score``), every class's lowered by
    ``log(1 + p_blank + exp(wildcard_score))`` at each frame: a path's score is then the
    wildcard's less the sum of those, ``shift`` ``(B,)`` over the valid frames, which the
    caller gives back (differentiably: it depends on the logits through ``p_blank``).
    Padded frames are set to 0 (never read, and finite, so no NaN reaches a gradient)."""
    compute = _compute_dtype(logits.dtype)
    frames = torch.arange(logits.shape[1], device=logits.device)[None, :] < logits_len[:, None]
    x = logits.to(compute).masked_fill(~frames[:, :, None], 0.0)
    lse = torch.logsumexp(x, dim=2)  # (B, T)
    score = torch.full_like(lse, float(wildcard_score))
    log_blank = x[:, :, blank] - lse
    column = torch.logaddexp(x[:, :, blank], lse + score)
    shift = torch.logsumexp(torch.stack([torch.zeros_like(lse), log_blank, score]), dim=0)
    shift = torch.where(frames, shift, 0.0).sum(1, dtype=torch.float64).to(compute)
    return torch.cat([x, column[:, :, None]], dim=2), shift


def _wildcard_loss(aug, aug_len, logits, logits_len, blank: int, wildcard_score: float, *,
                   zero_infinity: bool, warn_infeasible: bool = True) -> torch.Tensor:
    """The exact CTC loss ``(B,)`` of blank-augmented labels whose gaps may hold the
    wildcard (class C, see :func:`_prepare_batch_first`), checked there: through
    :func:`_wildcard_logits` and back by what it takes off each frame. The
    misuse warnings ``ctc_loss`` gives are given here (its checks of the augmented
    labels would take the wildcard for a misplaced label)."""
    if logits.shape[0]:
        _warn_if_probabilities(logits, logits_len, bool(_probability_suspects(logits,
                                                                               logits_len)))
    x, shift = _wildcard_logits(logits, logits_len, blank, wildcard_score)
    token = _PRECHECKED.set(aug)
    try:
        loss = ctc_loss(aug, aug_len, x, logits_len, exact=True)
    finally:
        _PRECHECKED.reset(token)
    loss = torch.where(torch.isinf(loss), loss, loss - shift.to(loss.dtype))
    infeasible = torch.isinf(loss)
    if warn_infeasible and not zero_infinity and bool(infeasible.any()):
        bad = infeasible.nonzero()[:, 0].tolist()
        _warn(f"{len(bad)} example(s) cannot be aligned: {bad[:10]} have fewer frames than "
              "their labels need (the wildcards aside); their loss is inf and their "
              "gradient 0 (zero_infinity=True makes the loss 0)")
    if zero_infinity:
        loss = torch.where(infeasible, 0.0, loss)
    return loss


# ----------------------------------------------------------------------------------
# Alignments: batched Viterbi forced alignment, and the per-frame alignment posterior.
# ----------------------------------------------------------------------------------
class Alignment(NamedTuple):
    """The most probable CTC alignment of each example (see :func:`forced_align`)."""

    labels: torch.Tensor  # (B, T) class id at each frame (the blank in blank states), -1 padded
    states: torch.Tensor  # (B, T) blank-augmented state index at each frame, -1 padded
    log_prob: torch.Tensor  # (B,) log-probability of the path; -inf where none exists


class Segment(NamedTuple):
    """One label's span in an alignment: frames ``start <= t < end``."""

    label: int
    start: int
    end: int


def _infeasible_message(labels_len, logits_len, raw, b,
                        hint: str = "; pass strict=False for an empty alignment instead") -> str:
    width = int(labels_len[b])
    repeats = int((raw[b, 1:width] == raw[b, : width - 1]).sum()) if width > 1 else 0
    return (f"example {b} cannot be aligned: {int(logits_len[b])} frames for {width} labels "
            f"with {repeats} adjacent repeats (needs at least {width + repeats} frames)"
            f"{hint}")


def forced_align(logits: torch.Tensor, labels: torch.Tensor,
                 logits_len: torch.Tensor | None = None,
                 labels_len: torch.Tensor | None = None, *, blank: int = 0,
                 strict: bool = True, wildcard: int | None = None,
                 wildcard_score: float = 0.0) -> Alignment:
    """The most probable CTC alignment (Viterbi) of each example, batched.

    Args:
      logits: ``(B, T, C)`` unnormalised scores (``log_softmax`` is applied here).
      labels: ``(B, U)`` class ids, as :class:`CtcLossModule` takes them: padded at the
        end with negative ids when ``labels_len`` is None.
      logits_len: ``(B,)`` valid frames; None means all.
      labels_len: ``(B,)`` label lengths; None reads them from the padding.
      blank: keyword-only, the blank's class id.
      strict: keyword-only. An example with fewer frames than labels plus adjacent
        repeats has no alignment: True raises ``ValueError`` naming it; False gives it
        an empty alignment (every frame -1, ``log_prob`` -inf).
      wildcard: keyword-only, an id (>= C, e.g. C) that marks a wildcard in ``labels``:
        any run of frames, none included, before the first label, between two or after
        the last, where the transcript is missing (MMS's ``<star>``). Its gap's state
        (even) takes each frame as the blank or as the wildcard, whichever scores more:
        those frames are labelled ``blank`` or ``wildcard`` in the result, and
        :func:`alignment_segments` skips them as blanks.
      wildcard_score: keyword-only, the log-score of each wildcard frame, whatever the
        model says (0, as MMS: a wildcard frame costs nothing, so beside a label it
        takes every frame but the one the label needs; lower, it takes only what the
        transcript cannot explain). A frame of a wildcard's gap is the blank where the
        blank scores at least as much, so a wildcard never lowers the best path.

    Returns:
      :class:`Alignment` with ``labels`` (B, T), ``states`` (B, T) and ``log_prob`` (B,).
      The path's log-probability is the sum of its frames' log-probabilities (and
      ``wildcard_score`` per wildcard frame), at most the exact CTC log-likelihood. Back-pointers take one byte per state and frame;
      on CPU a compiled kernel runs (see :func:`backend`), elsewhere a PyTorch loop
      over time. No gradient flows.
    """
    with torch.no_grad():
        aug, aug_len, logits, logits_len, labels_len = _prepare_batch_first(
            logits, labels, logits_len, labels_len, blank, False, wildcard=wildcard,
            wildcard_score=wildcard_score)
        batch, frames, classes = logits.shape
        raw = aug[:, 1::2]  # (B, U) the labels again, to count repeats for messages
        states = torch.full((batch, frames), -1, dtype=torch.long, device=logits.device)
        log_prob = torch.full((batch,), -math.inf, dtype=_compute_dtype(logits.dtype),
                              device=logits.device)
        t_max = int(logits_len.max()) if batch else 0
        width = int(aug_len.max()) if batch else 0
        log_probs = torch.log_softmax(logits[:, :t_max].to(log_prob.dtype), dim=2)
        if wildcard is not None:  # class C: a gap frame is the blank or the wildcard
            column = log_probs[:, :, blank].clamp(min=float(wildcard_score))
            log_probs = torch.cat([log_probs, column[:, :, None]], 2)
        args = (log_probs.contiguous(), aug[:, :width].contiguous(),
                aug_len.long().contiguous(), logits_len.long().contiguous())
        if _OPS is None or not _compiling():  # eager: no operator call (see ctc_loss)
            path, log_prob = _select_backend(logits.device, log_prob.dtype, width).viterbi(*args)
        else:
            path, log_prob = _OPS.ctc_viterbi(*args)
        states[:, :t_max] = path
        missing = ~torch.isfinite(log_prob)
        if strict and bool(missing.any()):
            raise ValueError(_infeasible_message(labels_len, logits_len, raw,
                                                 int(missing.nonzero()[0])))
        frame_labels = torch.where(states >= 0, aug.gather(1, states.clamp(min=0)), -1)
        if wildcard is not None:  # the wildcard where it outscored the blank, else the blank
            blank_won = torch.zeros_like(states, dtype=torch.bool)
            blank_won[:, :t_max] = log_probs[:, :, blank] >= float(wildcard_score)
            frame_labels = torch.where(frame_labels == classes,
                                       torch.where(blank_won, blank, wildcard), frame_labels)
        return Alignment(frame_labels, states, log_prob)


def _runs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(begin, end)``: where each run of one value in the non-empty 1-D ``x`` starts and
    ends (exclusive), on its device. The span helpers beside the port share it
    (torchaudio_compat, ctc_timestamps, ctc_long_align)."""
    starts = torch.ones_like(x, dtype=torch.bool)
    starts[1:] = x[1:] != x[:-1]
    begin = starts.nonzero()[:, 0]
    end = torch.cat([begin[1:], torch.tensor([x.numel()], device=x.device)])
    return begin, end


def alignment_segments(alignment: Alignment, example: int = 0) -> list:
    """Each label's frames in one example's alignment, in order: ``[Segment(label,
    start, end), ...]`` with ``end`` exclusive (what time-stamping speech needs)."""
    states = alignment.states[example].tolist()
    labels = alignment.labels[example].tolist()
    segments: list[Segment] = []
    for t, state in enumerate(states):
        if state < 0 or state % 2 == 0:  # padded frame, or a blank state
            continue
        if segments and states[t - 1] == state:
            segments[-1] = segments[-1]._replace(end=t + 1)
        else:
            segments.append(Segment(labels[t], t, t + 1))
    return segments


def alignment_targets(logits: torch.Tensor, labels: torch.Tensor,
                      logits_len: torch.Tensor | None = None,
                      labels_len: torch.Tensor | None = None, *,
                      blank: int = 0, wildcard: int | None = None,
                      wildcard_score: float = 0.0) -> torch.Tensor:
    """Per-frame class posteriors under the CTC alignment distribution: soft targets.

    ``targets[b, t, c]`` is the probability, over all alignments of the label sequence
    weighted by the model, that frame ``t`` emits class ``c``. Cross-entropy of the
    logits against these targets has the same gradient as the exact CTC loss, so they
    can be smoothed or re-weighted and trained on instead (label smoothing,
    re-weighting: Li et al. 2019, arXiv:1904.10619; focal CTC: Feng et al. 2019).

    Args: as :func:`forced_align` (batch-first, raw class ids). With a wildcard, a
    frame the wildcard takes (with probability g) targets the model's own distribution
    (times g): it adds no gradient there.

    Returns:
      ``(B, T, C)`` without gradient, in float32 (float64 for float64 logits). Rows sum
      to 1 on valid frames; padded frames and examples with no alignment are 0.
    """
    aug, aug_len, logits, logits_len, _ = _prepare_batch_first(
        logits, labels, logits_len, labels_len, blank, False, wildcard=wildcard,
        wildcard_score=wildcard_score)
    x = logits.detach().to(_compute_dtype(logits.dtype)).requires_grad_(True)
    with torch.enable_grad():
        if wildcard is None:
            loss = ctc_loss(aug, aug_len, x, logits_len, exact=True)
        else:
            loss = _wildcard_loss(aug, aug_len, x, logits_len, blank, wildcard_score,
                                  zero_infinity=False, warn_infeasible=False)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    # d loss / d logits = softmax - posterior, on every frame of a feasible example.
    targets = torch.softmax(x.detach(), dim=2) - grad
    frames = torch.arange(x.shape[1], device=x.device)[None, :] < logits_len[:, None]
    keep = frames & torch.isfinite(loss.detach())[:, None]
    return torch.where(keep[:, :, None], targets, 0.0)


# ----------------------------------------------------------------------------------
# Decoding lives in ctc_decoder.py beside this module (greedy, and a prefix beam
# search with a word language model), installed with it; its names are re-exported
# here on first use (PEP 562), not at import: ctc_decoder imports this module's input
# checks, so an import here would be a circle. A copy of this file alone says where
# decoding lives when one of them is asked for.
# ----------------------------------------------------------------------------------
_DECODER_NAMES = ("greedy_decode", "ctc_beam_search", "CtcBeamSearchDecoder", "Hypothesis")


def __getattr__(name: str):
    if name not in _DECODER_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import ctc_decoder
    except ModuleNotFoundError as missing:
        if missing.name not in ("ctc_decoder", "ngram_lm", "ctc_scorers"):
            raise
        raise ImportError(f"decoding lives in ctc_decoder.py, which is installed with "
                          f"seq_loss_util (pip install .); this copy of seq_loss_util.py "
                          f"runs without it ({missing})") from missing
    return getattr(ctc_decoder, name)


def __dir__() -> list:
    return sorted(set(globals()) | set(_DECODER_NAMES))


# Alone, `from seq_loss_util import *` takes what this file has, and no error.
if all(importlib.util.find_spec(m) is not None for m in ("ctc_decoder", "ngram_lm",
                                                         "ctc_scorers")):
    __all__.extend(_DECODER_NAMES)


# ----------------------------------------------------------------------------------
# The torch.library operators (_seq_loss_kernels/ops.py), registered once every
# function they call exists. ctc_loss and forced_align call them while torch.compile
# traces, so that it sees opaque operators; eager calls run the same functions
# directly. None with torch < 2.4 or without the package.
# ----------------------------------------------------------------------------------
_OPS = None
if _seq_loss_kernels is not None:
    from _seq_loss_kernels import ops as _ops_module

    _OPS = _ops_module.register(loss_forward=_loss_forward, loss_backward=_checked_loss_backward,
                                viterbi=_checked_viterbi,
                                second_order_gradient=_second_order_gradient,
                                compute_dtype=_compute_dtype,
                                state_shape=_state_shape)

