"""Triton kernels for what surrounds seq_loss_util's recursions on CUDA: the input
checks, the log-softmax, the loss and the backward's per-example set-up.

Done with ATen ops, this glue is about a hundred small kernel launches per training
step (views aside), each a few microseconds, against a recursion of a few hundred
microseconds. Here it is five launches, and the input checks still cost one host read:

* ``ctc_prepare_kernel``, programs over examples: ``CtcLossModule``'s raw labels
  ``(B, U)`` (padded with negative ids, or cut by ``labels_len``) to blank-augmented
  labels ``(B, 2U + 1)`` and lengths, and every check of the module and the loss as
  bits OR-ed into one int32 word (:data:`GAP` ... :data:`INFEASIBLE`). The wrapper
  reads the word once; any bit set sends the call to the general path, whose ATen
  checks name the fault, so messages and warnings are the same on every backend.
* ``ctc_log_softmax_kernel``, programs over tiles of frames: ``log_softmax`` in float32 from
  logits of any float dtype and strides, and per frame whether the row holds a NaN
  (a NaN or +inf logit), which is what makes an example "poisoned".
* ``ctc_loss_epilogue_kernel``, programs over examples: the loss from the two final
  states (Graves et al. 2006, eq. 8: their log-sum-exp, or the original's max), which
  examples count, and which are poisoned (a bad frame within ``T_b``).
* ``ctc_backward_prologue_kernel``, programs over examples: the gradient's per-example
  scale (the incoming gradient, 0 where the loss is not counted, NaN where poisoned),
  and the example's states sorted by class (stable), the order in which
  ``ctc_grad_kernel`` sums each class's posteriors.

Every kernel masks its loads; lengths are clamped before they address memory, so an
out-of-range length is reported, never followed.
"""
from __future__ import annotations

import torch

# The verdict word's bits (verdict.py, shared with the C kernel's glue).
from .verdict import (BAD_ID, GAP, INFEASIBLE, LABELS_LEN, LOGITS_LEN,  # noqa: F401
                      NOT_PROBABILITIES, verdict_passes)

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the Triton backend is then unavailable
    triton = None

# Consecutive class-sorted states a thread of the gradient kernel holds: its segmented
# scan is then in-thread for them, and crosses threads once per column.
GRAD_ROWS = 8

if triton is not None:
    # The same bits as constants the kernels may read.
    _GAP, _LABELS_LEN, _LOGITS_LEN, _BAD_ID = (tl.constexpr(GAP), tl.constexpr(LABELS_LEN),
                                               tl.constexpr(LOGITS_LEN), tl.constexpr(BAD_ID))
    _NOT_PROBABILITIES, _INFEASIBLE = tl.constexpr(NOT_PROBABILITIES), tl.constexpr(INFEASIBLE)

    @triton.jit
    def ctc_prepare_kernel(labels_ptr, stride_lb, stride_lu, labels_len_ptr, logits_ptr,
                           stride_xb, stride_xc, logits_len_ptr, aug_ptr, aug_len_ptr,
                           frames_ptr, norm_ptr, verdict_ptr, B, U, T, C, blank,
                           HAS_LABELS_LEN: tl.constexpr, HAS_LOGITS_LEN: tl.constexpr,
                           SHIFT: tl.constexpr, BLOCK_U: tl.constexpr,
                           BLOCK_A: tl.constexpr, BLOCK_C: tl.constexpr):
        """One example: augmented labels, lengths, the loss normaliser and its verdict
        bits (see the module docstring)."""
        b = tl.program_id(0).to(tl.int64)
        u = tl.arange(0, BLOCK_U)
        row = labels_ptr + b * stride_lb
        raw = tl.load(row + u * stride_lu, mask=u < U, other=-1).to(tl.int64)
        bits = 0
        if HAS_LABELS_LEN:
            n = tl.load(labels_len_ptr + b).to(tl.int64)
            bits |= tl.where((n < 0) | (n > U), _LABELS_LEN, 0)
            n = tl.minimum(tl.maximum(n, 0), U)
        else:
            present = (u < U) & (raw >= 0)
            n = tl.sum(present.to(tl.int64), axis=0)
            bits |= tl.where(tl.max((present != (u < n)).to(tl.int32), axis=0) != 0, _GAP, 0)
        valid = u < n
        if SHIFT:  # the original's convention: ids >= blank are raised by one
            bad = valid & ((raw < 0) | (raw >= C - 1))
        else:
            bad = valid & ((raw < 0) | (raw >= C) | (raw == blank))
        bits |= tl.where(tl.max(bad.to(tl.int32), axis=0) != 0, _BAD_ID, 0)
        # Adjacent repeats need a blank between them: T_b >= U_b + repeats.
        before = tl.load(row + (u - 1) * stride_lu, mask=valid & (u >= 1), other=-1)
        repeats = tl.sum((valid & (u >= 1) & (raw == before.to(tl.int64))).to(tl.int64), axis=0)
        if HAS_LOGITS_LEN:
            n_frames = tl.load(logits_len_ptr + b).to(tl.int64)
            bits |= tl.where((n_frames < 0) | (n_frames > T), _LOGITS_LEN, 0)
            n_frames = tl.minimum(tl.maximum(n_frames, 0), T)
        else:
            n_frames = T + 0 * b
        bits |= tl.where(n_frames < n + repeats, _INFEASIBLE, 0)
        # Logits and log-probabilities almost always have a negative score in the first
        # frame; where no example does, the general path looks at every frame.
        negative = (T == 0).to(tl.int32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            x = tl.load(logits_ptr + b * stride_xb + c * stride_xc,
                        mask=(c < C) & (n_frames > 0), other=1.0).to(tl.float32)
            negative |= tl.max(((x < 0) | (x != x)).to(tl.int32), axis=0)
        bits |= tl.where(negative != 0, _NOT_PROBABILITIES, 0)
        if bits != 0:
            tl.atomic_or(verdict_ptr, bits)
        # blank l1 blank l2 ... blank, 0 past 2 n + 1 (as the general path's labels).
        j = tl.arange(0, BLOCK_A)
        odd = (j % 2 == 1) & (j < 2 * n + 1)
        label = tl.load(row + ((j - 1) // 2) * stride_lu, mask=odd, other=0).to(tl.int64)
        if SHIFT:
            label = label + (label >= blank).to(tl.int64)
        aug = tl.where(odd, label, tl.where(j < 2 * n + 1, blank, 0))
        tl.store(aug_ptr + b * (2 * U + 1) + j, aug, mask=j < 2 * U + 1)
        tl.store(aug_len_ptr + b, 2 * n + 1)
        tl.store(frames_ptr + b, n_frames)
        tl.store(norm_ptr + b, tl.maximum(n, 1).to(tl.float32))

    @triton.jit
    def ctc_log_softmax_kernel(x_ptr, stride_xb, stride_xt, stride_xc, lp_ptr, bad_ptr,
                               frames_ptr, B, T, C, ROWS: tl.constexpr, BLOCK_C: tl.constexpr):
        """``ROWS`` frames: log_softmax over the classes in float32 (an online max and
        sum, then the rows), and whether each frame is valid and holds a NaN."""
        r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # flat (b, t)
        in_range = r < B * T
        b = r // T
        t = r % T
        rows = x_ptr + b * stride_xb + t * stride_xt  # (ROWS,)
        m = tl.full((ROWS,), float("-inf"), tl.float32)
        total = tl.zeros((ROWS,), tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            inside = in_range[:, None] & (c < C)[None, :]
            x = tl.load(rows[:, None] + c[None, :] * stride_xc, mask=inside,
                        other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=1))
            # An all -inf prefix has no shift; exp(-inf - 0) is 0, not NaN.
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            total = total * tl.exp(m - shift) + tl.sum(tl.exp(x - shift[:, None]), axis=1)
            m = m_new
        lse = m + tl.log(total)
        out = lp_ptr + r * C
        nan = tl.zeros((ROWS,), tl.int32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            inside = in_range[:, None] & (c < C)[None, :]
            x = tl.load(rows[:, None] + c[None, :] * stride_xc, mask=inside,
                        other=0.0).to(tl.float32)
            lp = x - lse[:, None]
            nan |= tl.max(((lp != lp) & inside).to(tl.int32), axis=1)
            tl.store(out[:, None] + c[None, :], lp, mask=inside)
        n_frames = tl.load(frames_ptr + b, mask=in_range, other=0)
        tl.store(bad_ptr + r, (nan != 0) & (t < n_frames), mask=in_range)

    @triton.jit
    def ctc_loss_epilogue_kernel(final_a_ptr, final_b_ptr, stride_f, bad_ptr, states_ptr,
                                 frames_ptr, loss_ptr, counted_ptr, poisoned_ptr, T,
                                 EXACT: tl.constexpr, ZERO_INFINITY: tl.constexpr,
                                 BLOCK_T: tl.constexpr):
        """One example's loss, whether it counts, and whether it is poisoned."""
        b = tl.program_id(0).to(tl.int64)
        n_frames = tl.load(frames_ptr + b)
        bad = 0
        for t0 in range(0, T, BLOCK_T):
            t = t0 + tl.arange(0, BLOCK_T)
            flag = tl.load(bad_ptr + b * T + t, mask=t < n_frames, other=0)
            bad |= tl.max(flag.to(tl.int32), axis=0)
        poisoned = bad != 0
        final_a = tl.load(final_a_ptr + b * stride_f)
        final_b = tl.load(final_b_ptr + b * stride_f)
        if EXACT:
            # Graves et al. 2006, eq. 8: p(l|x) sums the two final states.
            m = tl.maximum(final_a, final_b)
            m_safe = tl.where(m == float("-inf"), 0.0, m)
            log_like = m_safe + tl.log(tl.exp(final_a - m_safe) + tl.exp(final_b - m_safe))
            finite = (log_like == log_like) & (tl.abs(log_like) != float("inf"))
            counted = finite & ~poisoned
            if ZERO_INFINITY:
                loss = tl.where(counted, -log_like, 0.0)
            else:
                loss = tl.where(counted, -log_like, float("inf"))
        else:
            # The original: the larger final state, counted when T_b >= L_b.
            log_like = tl.maximum(final_a, final_b)
            counted = (n_frames >= tl.load(states_ptr + b)) & ~poisoned
            loss = tl.where(counted, -log_like, 0.0)
        tl.store(loss_ptr + b, tl.where(poisoned, float("nan"), loss))
        tl.store(counted_ptr + b, counted)
        tl.store(poisoned_ptr + b, poisoned)

    @triton.jit
    def ctc_backward_prologue_kernel(grad_loss_ptr, stride_g, counted_ptr, poisoned_ptr,
                                     labels_ptr, labels_len_ptr, scale_ptr, order_ptr,
                                     sorted_labels_ptr, L, C, BLOCK_S: tl.constexpr,
                                     ROWS: tl.constexpr):
        """One example's gradient scale, and its states in class order (stable)."""
        b = tl.program_id(0).to(tl.int64)
        g = tl.load(grad_loss_ptr + b * stride_g).to(tl.float32)
        counted = tl.load(counted_ptr + b) != 0
        poisoned = tl.load(poisoned_ptr + b) != 0
        scale = tl.where(counted, g, 0.0)
        # A poisoned example's NaN reaches every valid frame through the scale.
        tl.store(scale_ptr + b, tl.where(poisoned & (g != 0), float("nan"), scale))
        s = tl.arange(0, BLOCK_S)
        n_states = tl.load(labels_len_ptr + b)
        label = tl.load(labels_ptr + b * L + s, mask=s < n_states, other=0)
        # One key per state, unique, so the sort is stable: (class, position). Padded
        # states sort last (class C), lanes past L after them.
        key = tl.where(s < n_states, label, C) * BLOCK_S + s
        key = tl.sort(tl.where(s < L, key, (C + 1) * BLOCK_S))
        # Sorted position k is kept at (k % ROWS) * (BLOCK_S // ROWS) + k // ROWS: the
        # gradient kernel's (ROWS, BLOCK_S // ROWS) tile, ROWS consecutive positions a
        # thread, reads it with contiguous columns (triton_ctc.ctc_grad_kernel).
        at = (s % ROWS) * (BLOCK_S // ROWS) + s // ROWS
        tl.store(order_ptr + b * BLOCK_S + at, key % BLOCK_S)
        tl.store(sorted_labels_ptr + b * BLOCK_S + at, key // BLOCK_S)


def _pow2(n: int, least: int = 1) -> int:
    return max(least, triton.next_power_of_2(max(n, 1)))


def prepare_batch_first(logits, labels, logits_len, labels_len, blank: int,
                        shift_labels: bool):
    """``CtcLossModule``'s inputs to the loss's: ``(aug (B, 2U + 1) int64, aug_len (B,),
    frames (B,), norm (B,) float32, verdict (1,) int32)``. The caller checked the ranks,
    dtypes, batch sizes and devices (host-side); the values are checked here, into
    ``verdict``, which the caller reads."""
    batch, frames, classes = logits.shape
    width = labels.shape[1]
    device = logits.device
    aug = torch.empty(batch, 2 * width + 1, dtype=torch.long, device=device)
    aug_len = torch.empty(batch, dtype=torch.long, device=device)
    frames_of = torch.empty(batch, dtype=torch.long, device=device)
    norm = torch.empty(batch, dtype=torch.float32, device=device)
    verdict = torch.zeros(1, dtype=torch.int32, device=device)
    ctc_prepare_kernel[(batch,)](
        labels, labels.stride(0), labels.stride(1),
        labels_len if labels_len is not None else aug_len, logits, logits.stride(0),
        logits.stride(2), logits_len if logits_len is not None else aug_len, aug, aug_len,
        frames_of, norm, verdict, batch, width, frames, classes, blank,
        HAS_LABELS_LEN=labels_len is not None, HAS_LOGITS_LEN=logits_len is not None,
        SHIFT=bool(shift_labels), BLOCK_U=_pow2(width), BLOCK_A=_pow2(2 * width + 1),
        BLOCK_C=min(1024, _pow2(classes)), num_warps=4)
    return aug, aug_len, frames_of, norm, verdict


def softmax_tile(classes: int) -> tuple[int, int, int]:
    """``(ROWS, BLOCK_C, warps)`` of the log-softmax: classes in passes of at most 1024,
    frames stacked to tiles of about 1024 entries, 4 entries per thread (a pass is then
    about 140 SASS instructions, with no spill)."""
    block_c = min(1024, _pow2(classes))
    rows = max(1, min(64, 1024 // block_c))
    return rows, block_c, min(8, max(1, rows * block_c // 128))


def log_softmax(logits, logits_len):
    """``(log_probs (B, T, C) float32, bad (B, T) bool)``: a frame is bad when it is
    valid and its log_softmax holds a NaN."""
    batch, frames, classes = logits.shape
    log_probs = torch.empty(batch, frames, classes, dtype=torch.float32, device=logits.device)
    bad = torch.empty(batch, frames, dtype=torch.bool, device=logits.device)
    if batch and frames:
        rows, block_c, warps = softmax_tile(classes)
        ctc_log_softmax_kernel[(triton.cdiv(batch * frames, rows),)](
            logits, logits.stride(0), logits.stride(1), logits.stride(2), log_probs, bad,
            logits_len, batch, frames, classes, ROWS=rows, BLOCK_C=block_c, num_warps=warps)
    return log_probs, bad


def finish_loss(final_a, final_b, bad, labels_len, logits_len, exact: bool,
                zero_infinity: bool):
    """``(loss, counted, poisoned)``, each ``(B,)``, from the final states' log-
    probabilities ``(B,)`` (views of one ``(B, 2)`` tensor) and :func:`log_softmax`'s
    bad frames."""
    batch, frames = bad.shape
    loss = final_a.new_empty(batch)
    counted = torch.empty(batch, dtype=torch.bool, device=final_a.device)
    poisoned = torch.empty(batch, dtype=torch.bool, device=final_a.device)
    if batch:
        assert final_b.stride(0) == final_a.stride(0)
        ctc_loss_epilogue_kernel[(batch,)](
            final_a, final_b, final_a.stride(0), bad, labels_len, logits_len, loss, counted, poisoned, frames,
            EXACT=bool(exact), ZERO_INFINITY=bool(zero_infinity),
            BLOCK_T=min(1024, _pow2(frames)), num_warps=4)
    return loss, counted, poisoned


def backward_prologue(grad_loss, counted, poisoned, labels, labels_len, classes: int,
                      block_s: int):
    """``(scale (B,) float32, order (B, BLOCK_S), sorted_labels (B, BLOCK_S))`` for the
    gradient kernel, in its tile's order: see ``ctc_backward_prologue_kernel``."""
    batch, width = labels.shape
    scale = torch.empty(batch, dtype=torch.float32, device=labels.device)
    order = torch.empty(batch, block_s, dtype=torch.long, device=labels.device)
    sorted_labels = torch.empty_like(order)
    if batch:
        ctc_backward_prologue_kernel[(batch,)](
            grad_loss, grad_loss.stride(0), counted, poisoned, labels, labels_len, scale,
            order, sorted_labels, width, classes, BLOCK_S=block_s, ROWS=GRAD_ROWS,
            num_warps=min(8, max(1, block_s // 32)))
    return scale, order, sorted_labels


def aot_configs() -> list:
    """``(kernel, signature, constants from BLOCK_S, warps from BLOCK_S, name suffix)`` for
    ``triton_ctc.aot_compile``: each kernel at the sizes a call with ``BLOCK_S`` states
    gives it (float32 logits; the log-softmax also in bfloat16)."""
    i64, fp32, i32, i1 = "*i64", "*fp32", "*i32", "*i1"
    prepare = dict(labels_ptr=i64, stride_lb="i64", stride_lu="i64", labels_len_ptr=i64,
                   logits_ptr=fp32, stride_xb="i64", stride_xc="i64", logits_len_ptr=i64,
                   aug_ptr=i64, aug_len_ptr=i64, frames_ptr=i64, norm_ptr=fp32,
                   verdict_ptr=i32, B="i64", U="i64", T="i64", C="i64", blank="i64",
                   HAS_LABELS_LEN="constexpr", HAS_LOGITS_LEN="constexpr", SHIFT="constexpr",
                   BLOCK_U="constexpr", BLOCK_A="constexpr", BLOCK_C="constexpr")

    def softmax(dtype):
        return dict(x_ptr=dtype, stride_xb="i64", stride_xt="i64", stride_xc="i64",
                    lp_ptr=fp32, bad_ptr=i1, frames_ptr=i64, B="i64", T="i64", C="i64",
                    ROWS="constexpr", BLOCK_C="constexpr")

    epilogue = dict(final_a_ptr=fp32, final_b_ptr=fp32, stride_f="i64", bad_ptr=i1,
                    states_ptr=i64, frames_ptr=i64, loss_ptr=fp32, counted_ptr=i1,
                    poisoned_ptr=i1, T="i64", EXACT="constexpr", ZERO_INFINITY="constexpr",
                    BLOCK_T="constexpr")
    prologue = dict(grad_loss_ptr=fp32, stride_g="i64", counted_ptr=i1, poisoned_ptr=i1,
                    labels_ptr=i64, labels_len_ptr=i64, scale_ptr=fp32, order_ptr=i64,
                    sorted_labels_ptr=i64, L="i64", C="i64", BLOCK_S="constexpr")
    return [
        (ctc_prepare_kernel, prepare,
         lambda block: dict(HAS_LABELS_LEN=False, HAS_LOGITS_LEN=True, SHIFT=False,
                            BLOCK_U=block // 2, BLOCK_A=block, BLOCK_C=32), lambda block: 4,
         ""),
        *[(ctc_log_softmax_kernel, softmax(dtype),
           lambda block, classes=classes: dict(ROWS=softmax_tile(classes)[0],
                                               BLOCK_C=softmax_tile(classes)[1]),
           lambda block, classes=classes: softmax_tile(classes)[2],
           f"[{dtype[1:]},C={classes}]")
          for dtype in (fp32, "*bf16") for classes in (32, 1000)],
        (ctc_loss_epilogue_kernel, epilogue,
         lambda block: dict(EXACT=True, ZERO_INFINITY=False, BLOCK_T=1024), lambda block: 4,
         ""),
        (ctc_backward_prologue_kernel, prologue,
         lambda block: dict(BLOCK_S=block, ROWS=GRAD_ROWS),
         lambda block: min(8, max(1, block // 32)), ""),
    ]
