"""Triton kernels for seq_loss_util's CTC loss, its gradient and Viterbi alignment.

One program per example for the recursions, which loop over frames inside the kernel.
The example's states live in one power-of-two register tile (``BLOCK_S >= L``,
masked past ``L_b``), one state per thread (``num_warps = BLOCK_S / 32``, at most 32),
so a frame is one short dependent chain per thread: about 120 SASS instructions with
three barriers (one of its own, two in the block max) at BLOCK_S 256 to 1024, read
off the sm_90 code by ``benchmarks/gpu_static.py``. Every load and store is masked.

* ``ctc_forward_kernel``: log alpha (Graves et al. 2006, eq. 6-7) normalised per frame
  (its largest state 0) into ``alpha`` (B, T, L). The shifted reads (state ``s - 1``,
  ``s - 2``) come from row ``t - 1`` of ``alpha`` itself, stored one barrier earlier;
  frame ``t + 1``'s emissions are loaded while frame ``t`` computes. The per-frame
  shifts are summed in float64; both final states' unnormalised log-probabilities go
  to ``finals`` (B, 2), so the original's max, the exact log-sum-exp and
  ``zero_infinity`` all come from it.
* ``ctc_beta_kernel``: the backward variables (eq. 10-11) and nothing else, into
  ``beta`` (B, T, L), each row including its frame's emission, read back the same way.
* ``ctc_alpha_beta_kernel``: both recursions side by side, programs 0..B-1 alpha and
  B..2B-1 beta, when the forward knows a gradient will be needed: a training step then
  waits for one serial recursion, and the backward only builds the gradient.
* ``ctc_grad_kernel``: every frame of every example in parallel, programs over
  ``(b, t)``: the posterior of each state (eq. 14) from alpha, beta and the emission,
  and the gradient ``softmax - posterior`` (eq. 16) times the example's scale. Several
  states share a class (the blank, repeated labels); the states are visited in an
  order sorted by class (by ``triton_wrapper``'s backward prologue), and a segmented
  scan adds each class's posteriors in a fixed order. No atomics: gradients are bitwise
  reproducible.
* ``ctc_viterbi_kernel``: the best path, with uint8 back-pointers and the backtrack in
  the kernel. Ties prefer stay, then advance, as the C kernel.

Semantics match the C kernel (``cpu.c``): padded frames and padded states are never
read, an example with ``T_b = 0`` reads the start vector, and NaN propagates. The
kernels compute in float32 (``triton_wrapper``'s log_softmax reads float32, float16 and
bfloat16 logits and writes float32 log-probabilities); float64 and more than ``MAX_STATES`` states run
in seq_loss_util's PyTorch backend instead.

On CPU tensors they run under Triton's interpreter (``TRITON_INTERPRET=1``, set before
triton is imported), which is how CI tests them; ``aot_compile`` compiles each for a
GPU target with no GPU present.
"""
from __future__ import annotations

import torch

from . import triton_wrapper

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the backend is then unavailable
    triton = None

MAX_STATES = 4096  # the largest register tile; L = 2U + 1 up to 4095 (U up to 2047)


def backend():
    """:class:`TritonBackend`, or None when triton is not installed."""
    return TritonBackend if triton is not None else None


def block_states(width: int) -> int:
    return max(16, triton.next_power_of_2(max(width, 1)))


def num_warps(block_s: int) -> int:
    """One state per thread up to 1024 states (32 warps, a thread block's limit), so a
    frame of the serial loop is one short dependent chain per thread."""
    return min(32, max(1, block_s // 32))


def grad_warps(block_s: int, block_c: int) -> int:
    """The gradient kernel's warps: one state, and at most eight classes, per thread."""
    return min(32, max(num_warps(block_s), block_c // 256, 1))


if triton is not None:

    @triton.jit
    def _lse3(a, b, c):
        """log(exp(a) + exp(b) + exp(c)), -inf when all three are -inf, NaN kept."""
        m = tl.maximum(tl.maximum(a, b), c)
        m = tl.where(m == float("-inf"), 0.0, m)
        return m + tl.log(tl.exp(a - m) + tl.exp(b - m) + tl.exp(c - m))

    @triton.jit
    def _segment_add(value_a, start_a, value_b, start_b):
        # Segmented sum: a segment start discards what came before it.
        return tl.where(start_b != 0, value_b, value_a + value_b), start_a | start_b

    @triton.jit
    def _example(labels_ptr, labels_len_ptr, logits_len_ptr, b, B, L, s):
        """Example b's lengths, its valid states, their labels, and where the skip
        s - 2 -> s is allowed (into a label state, odd, whose label differs: a wildcard
        in a gap differs from the blank, and a gap is never skipped into)."""
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0)
        valid = s < n_states
        label = tl.load(labels_ptr + b * L + s, mask=valid, other=0)
        label_2 = tl.load(labels_ptr + b * L + s - 2, mask=valid & (s >= 2), other=-1)
        may_skip = valid & (s >= 2) & (s % 2 == 1) & (label != label_2)
        return n_states, n_frames, valid, label, may_skip

    @triton.jit
    def _alpha_rows(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr, finals_ptr,
                    b, B, T, C, L, BLOCK_S: tl.constexpr):
        """Example b's forward recursion: alpha rows and the two final states."""
        s = tl.arange(0, BLOCK_S)
        n_states, n_frames, valid, label, may_skip = _example(
            labels_ptr, labels_len_ptr, logits_len_ptr, b, B, L, s)
        emit_row = lp_ptr + b * T * C + label  # frame t's emission of state s: + t * C

        # The start vector is state 0 before frame 0 (what T_b = 0 reads). Frame 0 can
        # enter state 0 (stay) or state 1 (advance); skip 0 -> 2 is blank to blank.
        log_alpha = tl.where(valid & (s == 0), 0.0, float("-inf"))
        first_advance = tl.where(s == 1, 0.0, float("-inf"))
        total = tl.zeros([BLOCK_S], dtype=tl.float64)  # the summed shifts, in every lane
        emit = tl.load(emit_row, mask=valid & (n_frames > 0), other=float("-inf"))
        for t in range(0, n_frames):
            # Frame t + 1's emissions are fetched before frame t's arithmetic needs none.
            emit_next = tl.load(emit_row + (t + 1) * C, mask=valid & (t + 1 < n_frames),
                                other=float("-inf"))
            # s - 1 and s - 2 come from row t - 1 of alpha itself, stored by the other
            # threads one barrier ago (Graves et al. 2006, eq. 6-7).
            prev_row = alpha_ptr + (b * T + t - 1) * L
            advance = tl.load(prev_row + s - 1, mask=valid & (s >= 1) & (t > 0),
                              other=float("-inf"))
            advance = tl.where(t > 0, advance, first_advance)
            skip = tl.load(prev_row + s - 2, mask=may_skip & (t > 0), other=float("-inf"))
            x = tl.where(valid, _lse3(log_alpha, advance, skip) + emit, float("-inf"))
            shift = tl.max(x, axis=0)
            shift = tl.where(shift == float("-inf"), 0.0, shift)  # nothing reachable
            log_alpha = x - shift
            total += shift.to(tl.float64)
            tl.store(alpha_ptr + (b * T + t) * L + s, log_alpha, mask=s < L)
            emit = emit_next
            tl.debug_barrier()  # row t is complete before any thread reads it

        # Padded frames hold -inf: alpha is a defined output, bit for bit.
        for t in range(n_frames, T):
            tl.store(alpha_ptr + (b * T + t) * L + s, tl.full([BLOCK_S], float("-inf"), tl.float32),
                     mask=s < L)

        # Unnormalised log alpha of the last state and the one before it (Graves eq. 8).
        last = tl.sum(tl.where(s == n_states - 1, log_alpha, 0.0), axis=0).to(tl.float64)
        before = tl.sum(tl.where(s == n_states - 2, log_alpha, 0.0), axis=0).to(tl.float64)
        total_0 = tl.sum(tl.where(s == 0, total, 0.0), axis=0)
        final_a = (last + total_0).to(tl.float32)
        final_b = tl.where(n_states >= 2, (before + total_0).to(tl.float32), float("-inf"))
        tl.store(finals_ptr + 2 * b, final_a, mask=b < B)
        tl.store(finals_ptr + 2 * b + 1, final_b, mask=b < B)

    @triton.jit
    def _beta_rows(lp_ptr, labels_ptr, labels_len_ptr, beta_ptr, b, n_run, B, T, C, L,
                   BLOCK_S: tl.constexpr):
        """Example b's backward variables over its first ``n_run`` frames: ``beta``
        (B, T, L) row t holds log beta of frame t *including* frame t's emission
        (Graves et al. 2006, eq. 10-11), normalised per frame (largest state 0). Rows
        past ``n_run`` hold -inf."""
        s = tl.arange(0, BLOCK_S)
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        valid = s < n_states
        label = tl.load(labels_ptr + b * L + s, mask=valid, other=0)
        label_p2 = tl.load(labels_ptr + b * L + s + 2, mask=valid & (s + 2 < n_states), other=-1)
        may_skip_out = valid & (s % 2 == 1) & (s + 2 < n_states) & (label != label_p2)  # s -> s + 2
        emit_row = lp_ptr + b * T * C + label

        # Frame T_b - 1: the two final states (one if L_b == 1) with their emission.
        last = n_run - 1
        emit = tl.load(emit_row + last * C, mask=valid & (n_run > 0), other=float("-inf"))
        y = tl.where(valid & (s >= n_states - 2), emit, float("-inf"))
        shift = tl.max(y, axis=0)
        log_beta = y - tl.where(shift == float("-inf"), 0.0, shift)
        tl.store(beta_ptr + (b * T + last) * L + s, log_beta, mask=(s < L) & (n_run > 0))
        emit = tl.load(emit_row + (last - 1) * C, mask=valid & (n_run > 1), other=float("-inf"))
        tl.debug_barrier()
        for i in range(1, n_run):
            t = last - i
            emit_next = tl.load(emit_row + (t - 1) * C, mask=valid & (t >= 1),
                                other=float("-inf"))
            next_row = beta_ptr + (b * T + t + 1) * L
            step = tl.load(next_row + s + 1, mask=valid & (s + 1 < n_states), other=float("-inf"))
            skip = tl.load(next_row + s + 2, mask=may_skip_out, other=float("-inf"))
            y = tl.where(valid, _lse3(log_beta, step, skip) + emit, float("-inf"))
            shift = tl.max(y, axis=0)
            log_beta = y - tl.where(shift == float("-inf"), 0.0, shift)
            tl.store(beta_ptr + (b * T + t) * L + s, log_beta, mask=s < L)
            emit = emit_next
            tl.debug_barrier()  # row t is complete before any thread reads it

        # The other rows hold -inf: beta, when kept as an output, is defined bit for bit.
        for t in range(n_run, T):
            tl.store(beta_ptr + (b * T + t) * L + s, tl.full([BLOCK_S], float("-inf"), tl.float32),
                     mask=s < L)

    @triton.jit
    def ctc_forward_kernel(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr,
                           finals_ptr, B, T, C, L, BLOCK_S: tl.constexpr):
        """alpha only: the loss when no gradient will be asked for (torch.no_grad)."""
        b = tl.program_id(0).to(tl.int64)
        _alpha_rows(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr, finals_ptr,
                    b, B, T, C, L, BLOCK_S)

    @triton.jit
    def ctc_alpha_beta_kernel(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr,
                              finals_ptr, beta_ptr, B, T, C, L, BLOCK_S: tl.constexpr):
        """alpha and beta side by side: programs 0..B-1 run the forward recursion,
        B..2B-1 the backward one. They do not depend on each other, so a training
        step waits for one serial recursion, not two in a row."""
        pid = tl.program_id(0).to(tl.int64)
        if pid < B:
            _alpha_rows(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr,
                        finals_ptr, pid, B, T, C, L, BLOCK_S)
        else:
            b = pid - B
            n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
            n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0)
            _beta_rows(lp_ptr, labels_ptr, labels_len_ptr, beta_ptr, b,
                       tl.where(n_states > 0, n_frames, 0), B, T, C, L, BLOCK_S)

    @triton.jit
    def ctc_beta_kernel(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, scale_ptr,
                        beta_ptr, B, T, C, L, BLOCK_S: tl.constexpr):
        """beta alone, in the backward, for the examples whose gradient is needed
        (scale != 0), when the forward did not keep it."""
        b = tl.program_id(0).to(tl.int64)
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0)
        scale = tl.load(scale_ptr + b, mask=b < B, other=0.0)
        _beta_rows(lp_ptr, labels_ptr, labels_len_ptr, beta_ptr, b,
                   tl.where((n_states > 0) & (scale != 0), n_frames, 0), B, T, C, L, BLOCK_S)

    @triton.jit
    def ctc_grad_kernel(lp_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr, beta_ptr, scale_ptr,
                        order_ptr, sorted_labels_ptr, grad_ptr, B, T, C, L,
                        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
        """One frame of one example's gradient, ``softmax - posterior`` (Graves et al.
        2006, eq. 16) times the example's scale: every frame in parallel. The states
        are visited in class order (``order``, sorted by a kernel beforehand), so each class's
        posteriors are summed by one segmented scan in a fixed order: no atomics, and
        the gradient is bitwise reproducible."""
        b = tl.program_id(0).to(tl.int64) // T
        t = tl.program_id(0).to(tl.int64) % T
        s = tl.arange(0, BLOCK_S)
        cls = tl.arange(0, BLOCK_C)
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0)
        scale = tl.load(scale_ptr + b, mask=b < B, other=0.0)
        # scale == 0 (a loss not counted), no states or a padded frame: exactly 0.
        active = (t < n_frames) & (n_states > 0) & (scale != 0)
        lp_row = lp_ptr + (b * T + t) * C
        grad_row = grad_ptr + (b * T + t) * C
        for c0 in range(0, C, BLOCK_C):
            c = c0 + cls
            lp = tl.load(lp_row + c, mask=(c < C) & active, other=float("-inf"))
            tl.store(grad_row + c, tl.where(active, tl.exp(lp) * scale, 0.0), mask=c < C)
        if active:
            # Lane i holds state order[i]: the posterior (eq. 14) is computed in class
            # order directly, alpha + beta - emission, normalised over the frame.
            valid = s < n_states
            state = tl.load(order_ptr + b * L + s, mask=valid, other=0)
            cls_sorted = tl.load(sorted_labels_ptr + b * L + s, mask=valid, other=-1)
            cls_before = tl.load(sorted_labels_ptr + b * L + s - 1, mask=valid & (s >= 1),
                                 other=-1)
            cls_after = tl.load(sorted_labels_ptr + b * L + s + 1,
                                mask=valid & (s + 1 < n_states), other=-1)
            seg_start = (s == 0) | (cls_sorted != cls_before)
            seg_end = valid & ((s + 1 >= n_states) | (cls_sorted != cls_after))
            log_a = tl.load(alpha_ptr + (b * T + t) * L + state, mask=valid, other=float("-inf"))
            log_b = tl.load(beta_ptr + (b * T + t) * L + state, mask=valid, other=float("-inf"))
            emit = tl.load(lp_row + cls_sorted, mask=valid, other=float("-inf"))
            # A state that cannot emit here (-inf) has posterior 0, not -inf - -inf.
            emits = valid & (emit > float("-inf"))
            ab = tl.where(emits, log_a + log_b - tl.where(emits, emit, 0.0), float("-inf"))
            m = tl.max(ab, axis=0)
            m = tl.where(m == float("-inf"), 0.0, m)
            weight = tl.exp(ab - m)
            posterior = weight / tl.sum(weight, axis=0) * scale
            summed, _ = tl.associative_scan((posterior, seg_start.to(tl.int32)), 0, _segment_add)
            tl.debug_barrier()  # the softmax row is written before the label classes' fix
            tl.store(grad_row + cls_sorted, tl.exp(emit) * scale - summed, mask=seg_end)

    @triton.jit
    def ctc_viterbi_kernel(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, back_ptr,
                           path_ptr, score_ptr, scratch_ptr, B, T, C, L,
                           BLOCK_S: tl.constexpr, BLOCK_T: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        s = tl.arange(0, BLOCK_S)
        n_states, n_frames, valid, label, may_skip = _example(
            labels_ptr, labels_len_ptr, logits_len_ptr, b, B, L, s)
        row = scratch_ptr + b * BLOCK_S

        score = tl.where(valid & (s == 0), 0.0, float("-inf"))  # the start vector
        tl.store(row + s, score, mask=s < BLOCK_S)
        tl.debug_barrier()
        for t in range(0, n_frames):
            advance = tl.load(row + s - 1, mask=valid & (s >= 1), other=float("-inf"))
            skip = tl.load(row + s - 2, mask=may_skip, other=float("-inf"))
            best = score
            choice = tl.zeros([BLOCK_S], dtype=tl.int32)
            take = advance > best  # strict: ties keep stay
            best = tl.where(take, advance, best)
            choice = tl.where(take, 1, choice)
            take = skip > best
            best = tl.where(take, skip, best)
            choice = tl.where(take, 2, choice)
            emit = tl.load(lp_ptr + (b * T + t) * C + label, mask=valid, other=float("-inf"))
            score = tl.where(valid, best + emit, float("-inf"))
            tl.store(back_ptr + (b * T + t) * L + s, choice.to(tl.uint8), mask=valid)
            tl.debug_barrier()
            tl.store(row + s, score, mask=s < BLOCK_S)
            tl.debug_barrier()

        # The better of the last two states (the last one on ties), as the C kernel.
        end = n_states - 1
        end_score = tl.sum(tl.where(s == end, score, 0.0), axis=0)
        before_score = tl.sum(tl.where(s == end - 1, score, 0.0), axis=0)
        use_before = (n_states >= 2) & (before_score > end_score)
        state = tl.where(use_before, end - 1, end).to(tl.int64)
        best_score = tl.where(use_before, before_score, end_score)
        best_score = tl.where(n_states > 0, best_score, float("-inf"))
        tl.store(score_ptr + b, best_score, mask=b < B)

        frames = tl.arange(0, BLOCK_T)
        for t0 in range(0, T, BLOCK_T):
            tl.store(path_ptr + b * T + t0 + frames, tl.full([BLOCK_T], -1, tl.int64),
                     mask=t0 + frames < T)
        tl.debug_barrier()
        # Backtrack (every lane walks the same path; one value per address).
        n_back = tl.where(best_score > float("-inf"), n_frames, 0)
        for i in range(0, n_back):
            t = n_back - 1 - i
            tl.store(path_ptr + b * T + t, state, mask=b < B)
            step = tl.load(back_ptr + (b * T + t) * L + state, mask=b < B, other=0)
            state = state - step.to(tl.int64)


class TritonBackend:
    """The Triton kernels on float32 log-probabilities; the same interface as
    seq_loss_util's PyTorch backend (``state`` is ``(alpha,)``)."""

    name = "triton"

    @staticmethod
    def supports(dtype: torch.dtype, width: int) -> bool:
        return dtype in (torch.float32, torch.float16, torch.bfloat16) and width <= MAX_STATES

    # The forward can run beta beside alpha (``keep_beta``): its state is then
    # (2, B, T', L), alpha and beta, and the backward only builds the gradient.
    precomputes_beta = True

    @staticmethod
    def forward(log_probs, labels, labels_len, logits_len, keep_beta=False):
        batch, frames, classes = log_probs.shape
        width = labels.shape[1]
        block = block_states(width)
        finals = log_probs.new_empty(batch, 2)
        if keep_beta:
            state = log_probs.new_empty(2, batch, frames, width)  # alpha, beta: (B, T', L)
            if batch:
                ctc_alpha_beta_kernel[(2 * batch,)](
                    log_probs, labels, labels_len, logits_len, state[0], finals, state[1],
                    batch, frames, classes, width, BLOCK_S=block, num_warps=num_warps(block))
            return (state,), finals[:, 0], finals[:, 1]
        alpha = log_probs.new_empty(batch, frames, width)  # (B, T', L)
        if batch:
            ctc_forward_kernel[(batch,)](log_probs, labels, labels_len, logits_len, alpha, finals,
                                         batch, frames, classes, width, BLOCK_S=block,
                                         num_warps=num_warps(block))
        return (alpha,), finals[:, 0], finals[:, 1]

    # The glue around the recursions runs as kernels too (triton_wrapper): the
    # wrapper calls log_softmax, finish_loss and, for CtcLossModule,
    # prepare_batch_first, and hands backward the pieces of the scale.
    fuses_wrapper = True
    prepare_batch_first = staticmethod(triton_wrapper.prepare_batch_first)
    verdict_passes = staticmethod(triton_wrapper.verdict_passes)
    log_softmax = staticmethod(triton_wrapper.log_softmax)
    finish_loss = staticmethod(triton_wrapper.finish_loss)

    @staticmethod
    def backward(state, log_probs, labels, labels_len, logits_len, grad_loss, counted,
                 poisoned):
        """d loss / d logits ``(B, T', C)`` for the incoming ``grad_loss`` ``(B,)``: 0
        where the loss is not counted (``counted``), NaN on the valid frames of a
        ``poisoned`` example that has a gradient."""
        (state,) = state
        batch, frames, classes = log_probs.shape
        width = labels.shape[1]
        block = block_states(width)
        grad = torch.empty_like(log_probs)  # (B, T', C), written in full by the kernels
        kept = state.dim() == 4  # the forward ran beta beside alpha
        if kept:
            alpha, beta = state[0], state[1]
        else:
            alpha = state
            beta = torch.empty_like(alpha)  # (B, T', L): with alpha, what native holds here
        if not batch or not frames:
            return grad
        scale, order, sorted_labels = triton_wrapper.backward_prologue(
            grad_loss, counted, poisoned, labels, labels_len, classes, block)
        if not kept:
            ctc_beta_kernel[(batch,)](log_probs, labels, labels_len, logits_len, scale, beta,
                                      batch, frames, classes, width, BLOCK_S=block,
                                      num_warps=num_warps(block))
        block_c = min(1024, max(128, triton.next_power_of_2(classes)))
        ctc_grad_kernel[(batch * frames,)](log_probs, labels_len, logits_len, alpha, beta, scale,
                                           order, sorted_labels, grad,
                                           batch, frames, classes, width, BLOCK_S=block,
                                           BLOCK_C=block_c, num_warps=grad_warps(block, block_c))
        return grad

    @staticmethod
    def viterbi(log_probs, labels, labels_len, logits_len):
        batch, frames, classes = log_probs.shape
        width = labels.shape[1]
        block = block_states(width)
        back = torch.empty(batch, frames, width, dtype=torch.uint8, device=log_probs.device)
        path = torch.empty(batch, frames, dtype=torch.long, device=log_probs.device)
        score = log_probs.new_empty(batch)
        scratch = log_probs.new_empty(batch, block)
        if batch:
            ctc_viterbi_kernel[(batch,)](log_probs, labels, labels_len, logits_len, back, path,
                                         score, scratch, batch, frames, classes, width,
                                         BLOCK_S=block, BLOCK_T=256, num_warps=num_warps(block))
        return path, score


def aot_compile(target=None, blocks=None) -> list:
    """Compiles every kernel at every block size (or those in ``blocks``) for a GPU
    target (default sm_90) with no GPU present; returns ``[(kernel name, BLOCK_S,
    compiled)]``, the cubin in ``compiled.asm["cubin"]``. Catches what the interpreter
    cannot: code the compiler rejects."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = target or GPUTarget("cuda", 90, 32)
    scalars = {"B": "i64", "T": "i64", "C": "i64", "L": "i64"}
    fp32, i64 = "*fp32", "*i64"
    lengths = dict(labels_len_ptr=i64, logits_len_ptr=i64)
    # (kernel, signature, constants (with BLOCK_S, or from it), warps from BLOCK_S, the
    # name's suffix): the gradient
    # kernel at its smallest and largest class block; the glue kernels at the sizes a
    # BLOCK_S-state call gives them (BLOCK_S // 2 labels, 32 or 1024 classes).
    configs = [
        (ctc_forward_kernel, dict(lp_ptr=fp32, labels_ptr=i64, **lengths, alpha_ptr=fp32,
                                  finals_ptr=fp32, **scalars, BLOCK_S="constexpr"), None,
         num_warps, ""),
        (ctc_alpha_beta_kernel, dict(lp_ptr=fp32, labels_ptr=i64, **lengths, alpha_ptr=fp32,
                                     finals_ptr=fp32, beta_ptr=fp32, **scalars,
                                     BLOCK_S="constexpr"), None, num_warps, ""),
        (ctc_beta_kernel, dict(lp_ptr=fp32, labels_ptr=i64, **lengths, scale_ptr=fp32,
                               beta_ptr=fp32, **scalars, BLOCK_S="constexpr"), None, num_warps,
         ""),
        *[(ctc_grad_kernel, dict(lp_ptr=fp32, **lengths, alpha_ptr=fp32, beta_ptr=fp32,
                                 scale_ptr=fp32, order_ptr=i64, sorted_labels_ptr=i64,
                                 grad_ptr=fp32, **scalars, BLOCK_S="constexpr",
                                 BLOCK_C="constexpr"), {"BLOCK_C": block_c},
           lambda block, block_c=block_c: grad_warps(block, block_c), f"[BLOCK_C={block_c}]")
          for block_c in (128, 1024)],
        (ctc_viterbi_kernel, dict(lp_ptr=fp32, labels_ptr=i64, **lengths, back_ptr="*u8",
                                  path_ptr=i64, score_ptr=fp32, scratch_ptr=fp32, **scalars,
                                  BLOCK_S="constexpr", BLOCK_T="constexpr"), {"BLOCK_T": 256},
         num_warps, ""),
        *triton_wrapper.aot_configs(),
    ]
    results = []
    block = 16
    while block <= MAX_STATES:
        if blocks is not None and block not in blocks:
            block *= 2
            continue
        for kernel, signature, extra, warps, suffix in configs:
            constants = extra(block) if callable(extra) else {"BLOCK_S": block, **(extra or {})}
            source = ASTSource(fn=kernel, signature=signature, constexprs=constants)
            compiled = triton.compile(source, target=target, options={"num_warps": warps(block)})
            results.append((kernel.__name__ + suffix, block, compiled))
        block *= 2
    return results
