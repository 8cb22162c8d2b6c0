"""Triton kernels for seq_loss_util's CTC loss, its gradient and Viterbi alignment.

One program per example. The example's states live in one power-of-two register tile
(``BLOCK_S >= L``, masked past ``L_b``) and the loop over frames runs inside the
kernel. The shifted reads of the recursion (state ``s - 1``, ``s - 2``, or ``s + 1``,
``s + 2`` going backward) go through a per-example scratch row in global memory, with a
barrier between the store and the loads. Every load and store carries a mask.

* ``ctc_forward_kernel``: log alpha (Graves et al. 2006, eq. 6-7) normalised per frame
  (its largest state 0) into ``alpha`` (B, T, L); the per-frame shifts summed in
  float64; both final states' unnormalised log-probabilities into ``finals`` (B, 2), so
  the original's max, the exact log-sum-exp and ``zero_infinity`` all come from it.
* ``ctc_backward_kernel``: log beta (eq. 10-11) frame by frame, and the gradient
  ``softmax - posterior`` (eq. 16) times the example's scale written straight into
  (B, T, C). Several states share a class (the blank, repeated labels); their
  posteriors are summed deterministically: states are visited in an order sorted by
  class (computed once per call on the host), and a segmented scan adds each class's
  posteriors in a fixed order. No atomics, so gradients are bitwise reproducible.
* ``ctc_viterbi_kernel``: the best path, with uint8 back-pointers and the backtrack in
  the kernel. Ties prefer stay, then advance, as the C kernel.

Semantics match the C kernel (``cpu.c``): padded frames and padded states are never
read, an example with ``T_b = 0`` reads the start vector, and NaN propagates. The
kernels compute in float32 (seq_loss_util hands them float32 log-probabilities for
float32, float16 and bfloat16 logits); float64 and more than ``MAX_STATES`` states run
in seq_loss_util's PyTorch backend instead.

On CPU tensors they run under Triton's interpreter (``TRITON_INTERPRET=1``, set before
triton is imported), which is how CI tests them; ``aot_compile`` compiles each for a
GPU target with no GPU present.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the backend is then unavailable
    triton = None

MAX_STATES = 4096  # the largest register tile; L = 2U + 1 up to 4095 (U up to 2047)
BLOCK_C = 128  # classes written per step of the gradient's class loop


def backend():
    """:class:`TritonBackend`, or None when triton is not installed."""
    return TritonBackend if triton is not None else None


def block_states(width: int) -> int:
    return max(16, triton.next_power_of_2(max(width, 1)))


def num_warps(block_s: int) -> int:
    return min(16, max(1, block_s // 256))


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
        s - 2 -> s is allowed (the labels differ)."""
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0)
        valid = s < n_states
        label = tl.load(labels_ptr + b * L + s, mask=valid, other=0)
        label_2 = tl.load(labels_ptr + b * L + s - 2, mask=valid & (s >= 2), other=-1)
        return n_states, n_frames, valid, label, valid & (s >= 2) & (label != label_2)

    @triton.jit
    def ctc_forward_kernel(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr,
                           finals_ptr, scratch_ptr, B, T, C, L, BLOCK_S: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        s = tl.arange(0, BLOCK_S)
        n_states, n_frames, valid, label, may_skip = _example(
            labels_ptr, labels_len_ptr, logits_len_ptr, b, B, L, s)
        row = scratch_ptr + b * BLOCK_S

        # The start vector: state 0 before frame 0 (what T_b = 0 reads).
        log_alpha = tl.where(valid & (s == 0), 0.0, float("-inf"))
        tl.store(row + s, log_alpha, mask=s < BLOCK_S)
        total = tl.zeros([BLOCK_S], dtype=tl.float64)  # the summed shifts, in every lane
        tl.debug_barrier()
        for t in range(0, n_frames):
            advance = tl.load(row + s - 1, mask=valid & (s >= 1), other=float("-inf"))
            skip = tl.load(row + s - 2, mask=may_skip, other=float("-inf"))
            emit = tl.load(lp_ptr + (b * T + t) * C + label, mask=valid, other=float("-inf"))
            x = tl.where(valid, _lse3(log_alpha, advance, skip) + emit, float("-inf"))
            shift = tl.max(x, axis=0)
            shift = tl.where(shift == float("-inf"), 0.0, shift)  # nothing reachable
            log_alpha = x - shift
            total += shift.to(tl.float64)
            tl.debug_barrier()  # every lane has read the row before it is rewritten
            tl.store(row + s, log_alpha, mask=s < BLOCK_S)
            tl.store(alpha_ptr + (b * T + t) * L + s, log_alpha, mask=s < L)
            tl.debug_barrier()

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
    def ctc_backward_kernel(lp_ptr, labels_ptr, labels_len_ptr, logits_len_ptr, alpha_ptr,
                            scale_ptr, order_ptr, sorted_labels_ptr, grad_ptr, scratch_ptr,
                            B, T, C, L, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        s = tl.arange(0, BLOCK_S)
        cls = tl.arange(0, BLOCK_C)
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0)
        scale = tl.load(scale_ptr + b, mask=b < B, other=0.0)
        # scale == 0 (a loss not counted) or no states: the gradient is 0 everywhere.
        n_run = tl.where((scale != 0) & (n_states > 0), n_frames, 0)
        valid = s < n_states
        label = tl.load(labels_ptr + b * L + s, mask=valid, other=0)
        label_p2 = tl.load(labels_ptr + b * L + s + 2, mask=valid & (s + 2 < n_states), other=-1)
        may_skip_out = valid & (s + 2 < n_states) & (label != label_p2)  # s -> s + 2
        # States in class order: each class's states form one segment.
        order = tl.load(order_ptr + b * L + s, mask=valid, other=0)
        cls_sorted = tl.load(sorted_labels_ptr + b * L + s, mask=valid, other=-1)
        cls_before = tl.load(sorted_labels_ptr + b * L + s - 1, mask=valid & (s >= 1), other=-1)
        cls_after = tl.load(sorted_labels_ptr + b * L + s + 1, mask=valid & (s + 1 < n_states),
                            other=-1)
        seg_start = (s == 0) | (cls_sorted != cls_before)
        seg_end = valid & ((s + 1 >= n_states) | (cls_sorted != cls_after))
        beta_row = scratch_ptr + b * 2 * BLOCK_S
        post_row = beta_row + BLOCK_S

        # Frames past T_b (all frames when the gradient is 0) get 0.
        for t in range(n_run, T):
            for c0 in range(0, C, BLOCK_C):
                tl.store(grad_ptr + (b * T + t) * C + c0 + cls, tl.zeros([BLOCK_C], tl.float32),
                         mask=c0 + cls < C)

        # beta at frame T_b - 1: 0 in the two final states (one if L_b == 1).
        log_beta = tl.where(valid & (s >= n_states - 2), 0.0, float("-inf"))
        for i in range(0, n_run):
            t = n_run - 1 - i
            # Posterior of every state (eq. 14), normalised per frame.
            log_a = tl.load(alpha_ptr + (b * T + t) * L + s, mask=valid, other=float("-inf"))
            ab = tl.where(valid, log_a + log_beta, float("-inf"))
            m = tl.max(ab, axis=0)
            m = tl.where(m == float("-inf"), 0.0, m)
            log_z = m + tl.log(tl.sum(tl.exp(ab - m), axis=0))
            posterior = tl.where(valid, tl.exp(ab - log_z) * scale, 0.0)
            tl.store(post_row + s, posterior, mask=s < BLOCK_S)
            # softmax times the scale for every class ...
            for c0 in range(0, C, BLOCK_C):
                c = c0 + cls
                lp = tl.load(lp_ptr + (b * T + t) * C + c, mask=c < C, other=float("-inf"))
                tl.store(grad_ptr + (b * T + t) * C + c, tl.exp(lp) * scale, mask=c < C)
            tl.debug_barrier()
            # ... then, for each class in the label, minus its states' posteriors summed
            # in class order by a segmented scan: one fixed order, no atomics.
            in_order = tl.load(post_row + order, mask=valid, other=0.0)
            summed, _ = tl.associative_scan((in_order, seg_start.to(tl.int32)), 0, _segment_add)
            lp_cls = tl.load(lp_ptr + (b * T + t) * C + cls_sorted, mask=seg_end,
                             other=float("-inf"))
            tl.store(grad_ptr + (b * T + t) * C + cls_sorted, tl.exp(lp_cls) * scale - summed,
                     mask=seg_end)
            # beta of frame t - 1 from frame t (for t == 0 it is computed and unused).
            emit = tl.load(lp_ptr + (b * T + t) * C + label, mask=valid, other=float("-inf"))
            after = tl.where(valid, log_beta + emit, float("-inf"))
            tl.store(beta_row + s, after, mask=s < BLOCK_S)
            tl.debug_barrier()
            step = tl.load(beta_row + s + 1, mask=valid & (s + 1 < n_states), other=float("-inf"))
            skip = tl.load(beta_row + s + 2, mask=may_skip_out, other=float("-inf"))
            y = tl.where(valid, _lse3(after, step, skip), float("-inf"))
            shift = tl.max(y, axis=0)
            log_beta = y - tl.where(shift == float("-inf"), 0.0, shift)
            tl.debug_barrier()  # the rows are read before the next frame rewrites them

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

    @staticmethod
    def forward(log_probs, labels, labels_len, logits_len):
        batch, frames, classes = log_probs.shape
        width = labels.shape[1]
        block = block_states(width)
        alpha = log_probs.new_empty(batch, frames, width)  # (B, T', L)
        finals = log_probs.new_empty(batch, 2)
        scratch = log_probs.new_empty(batch, block)
        if batch:
            ctc_forward_kernel[(batch,)](log_probs, labels, labels_len, logits_len, alpha, finals,
                                         scratch, batch, frames, classes, width, BLOCK_S=block,
                                         num_warps=num_warps(block))
        return (alpha,), finals[:, 0], finals[:, 1]

    @staticmethod
    def backward(state, log_probs, labels, labels_len, logits_len, scale):
        (alpha,) = state
        batch, frames, classes = log_probs.shape
        width = labels.shape[1]
        block = block_states(width)
        # States sorted by class (padded states last), for the per-class sums.
        states = torch.arange(width, device=labels.device)
        keys = torch.where(states < labels_len[:, None], labels, classes)  # (B, L)
        sorted_labels, order = torch.sort(keys, dim=1, stable=True)
        grad = torch.empty_like(log_probs)  # (B, T', C), written in full by the kernel
        scratch = log_probs.new_empty(batch, 2 * block)
        if batch:
            ctc_backward_kernel[(batch,)](log_probs, labels, labels_len, logits_len, alpha,
                                          scale.contiguous(), order.contiguous(),
                                          sorted_labels.contiguous(), grad, scratch, batch,
                                          frames, classes, width, BLOCK_S=block, BLOCK_C=BLOCK_C,
                                          num_warps=num_warps(block))
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


def aot_compile(target=None) -> list:
    """Compiles every kernel at every block size for a GPU target (default sm_90) with
    no GPU present; returns ``[(kernel, BLOCK_S, ok)]``. Catches what the interpreter
    cannot: code the compiler rejects."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = target or GPUTarget("cuda", 90, 32)
    scalars = {"B": "i64", "T": "i64", "C": "i64", "L": "i64"}
    signatures = {
        ctc_forward_kernel: dict(lp_ptr="*fp32", labels_ptr="*i64", labels_len_ptr="*i64",
                                 logits_len_ptr="*i64", alpha_ptr="*fp32", finals_ptr="*fp32",
                                 scratch_ptr="*fp32", **scalars, BLOCK_S="constexpr"),
        ctc_backward_kernel: dict(lp_ptr="*fp32", labels_ptr="*i64", labels_len_ptr="*i64",
                                  logits_len_ptr="*i64", alpha_ptr="*fp32", scale_ptr="*fp32",
                                  order_ptr="*i64", sorted_labels_ptr="*i64", grad_ptr="*fp32",
                                  scratch_ptr="*fp32", **scalars, BLOCK_S="constexpr",
                                  BLOCK_C="constexpr"),
        ctc_viterbi_kernel: dict(lp_ptr="*fp32", labels_ptr="*i64", labels_len_ptr="*i64",
                                 logits_len_ptr="*i64", back_ptr="*u8", path_ptr="*i64",
                                 score_ptr="*fp32", scratch_ptr="*fp32", **scalars,
                                 BLOCK_S="constexpr", BLOCK_T="constexpr"),
    }
    results = []
    block = 16
    while block <= MAX_STATES:
        for kernel, signature in signatures.items():
            constants = {"BLOCK_S": block}
            if "BLOCK_C" in signature:
                constants["BLOCK_C"] = BLOCK_C
            if "BLOCK_T" in signature:
                constants["BLOCK_T"] = 256
            source = ASTSource(fn=kernel, signature=signature, constexprs=constants)
            compiled = triton.compile(source, target=target,
                                      options={"num_warps": num_warps(block)})
            results.append((kernel.__name__, block, bool(compiled.asm.get("cubin"))))
        block *= 2
    return results
