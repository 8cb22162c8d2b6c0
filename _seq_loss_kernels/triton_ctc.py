"""Triton kernels for seq_loss_util's CTC loss, its gradient and Viterbi alignment.

One program per example for the recursions, which loop over frames inside the kernel,
eight frames an iteration (the block max once, on the first), then straight code for
the last few. The example's states live in one power-of-two register tile (``BLOCK_S >=
L``, masked past ``L_b``), one state per thread (``num_warps = BLOCK_S / 32``, at most
32). A frame takes its neighbour states from the tile through one shared-memory
exchange, never from global memory, and its emission was fetched two frames earlier:
about 30 SASS instructions a frame and two barriers, with the block max's share
(``benchmarks/gpu_static.py`` reads this off the sm_90 code and
``tests/test_gpu_static.py`` holds it). The recursions work in log2 units; their
stores and emission loads are masked.

* ``ctc_forward_kernel``: log2 alpha (Graves et al. 2006, eq. 6-7) into ``alpha`` (B, T,
  L), each row up to an offset of its own (the shift of the last rescale). The shifts
  are summed in float64; both final states' unnormalised log-probabilities (natural
  log) go to ``finals`` (B, 2), so the original's max, the exact log-sum-exp and
  ``zero_infinity`` all come from it.
* ``ctc_beta_kernel``: the backward variables (eq. 10-11) and nothing else, into
  ``beta`` (B, T, L), each row including its frame's emission, in the same units.
* ``ctc_alpha_beta_kernel``: both recursions side by side, programs 0..B-1 alpha and
  B..2B-1 beta, when the forward knows a gradient will be needed: a training step then
  waits for one serial recursion, and the backward only builds the gradient.
* ``ctc_grad_kernel``: every frame of every example in parallel, programs over
  ``(b, chunk of up to 16 frames)``, eight states a thread: the posterior of each state
  (eq. 14) from alpha, beta and the emission, and the gradient ``softmax - posterior`` (eq. 16) times the example's scale. Several
  states share a class (the blank, repeated labels); the states are visited in an
  order sorted by class (by ``triton_wrapper``'s backward prologue), and a segmented
  scan adds each class's posteriors in a fixed order. No atomics: gradients are bitwise
  reproducible.
* ``ctc_viterbi_kernel``: the best path, with uint8 back-pointers and the backtrack in
  the kernel. Ties prefer stay, then advance, as the C kernel.

Semantics match the C kernel (``cpu.c``): padded frames and padded states never reach
a result (the gradient kernel reads them, inside the tensors, and drops them), an
example with ``T_b = 0`` reads the start vector, and NaN propagates. The kernels
compute in float32 (``triton_wrapper``'s log_softmax reads float32, float16 and
bfloat16 logits and writes float32 log-probabilities); float64 and more than
``MAX_STATES`` states run in seq_loss_util's PyTorch backend instead.

On CPU tensors they run under Triton's interpreter (``TRITON_INTERPRET=1``, set before
triton is imported), which is how CI tests them; ``aot_compile`` compiles each for a
GPU target with no GPU present.
"""
from __future__ import annotations

import math
import os

import torch

from . import triton_wrapper

try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - the backend is then unavailable
    triton = None

MAX_STATES = 4096  # the largest register tile; L = 2U + 1 up to 4095 (U up to 2047)
RESCALE_FRAMES = 8  # frames between the recursions' block max (see _alpha_rows)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # read by triton at import too


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
    """The gradient kernel's warps: eight states (and at most eight classes) a thread,
    so most of a frame's work is in-thread and its scan and reductions cross few warps
    (at one state a thread, 1024 states made it issue-bound)."""
    return min(16, max(1, block_s // 256, block_c // 256))


def grad_frames(batch: int, frames: int) -> int:
    """Frames per gradient program: up to 16, sharing one read of the class order, while
    the programs still fill an H100/H200's 132 SMs eight deep. (The cost model at
    (32, 1500, 32, 300): 207 us at 8, 185 at 16, 185 at 32.)"""
    per = max(1, (batch * frames) // (132 * 8))
    return 1 << min(4, per.bit_length() - 1)


if triton is not None:
    LOG2E = tl.constexpr(1 / math.log(2))  # natural log to log2 units
    LN2_64 = tl.constexpr(math.log(2))  # back, applied in float64
    RESCALE_EVERY = tl.constexpr(RESCALE_FRAMES)
    INTERPRETED = tl.constexpr(INTERPRETED)

    @triton.jit
    def _log2(x):
        """log2 of a sum in [1, 3]: the hardware's approximation on a GPU (one MUFU.LG2,
        absolute error below 2**-22 there, PTX ISA lg2.approx), the exact one under the
        interpreter, which has no libdevice."""
        if INTERPRETED:
            return tl.log2(x)
        else:
            return libdevice.fast_log2f(x)

    @triton.jit
    def _lse3_2(a, b, c):
        """log2(2**a + 2**b + 2**c) with two exponentials: the largest term is 1.
        -inf when all three are -inf; a NaN anywhere makes the largest NaN and the
        result NaN."""
        hi = tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)
        lo = tl.minimum(a, b)
        m = tl.maximum(hi, c, propagate_nan=tl.PropagateNan.ALL)
        mid = tl.minimum(hi, c)
        # Nothing reachable (m = -inf): the base is finite, so 2**(-inf - base) = 0.
        base = tl.maximum(m, -3.4028234663852886e38)
        return m + _log2(1.0 + tl.exp2(lo - base) + tl.exp2(mid - base))

    @triton.jit
    def _step(x, emit, sources):
        """One frame of either recursion (Graves et al. 2006, eq. 6-7 forward, 10-11
        backward) in log2 units: the state itself, its two ``sources`` neighbours (a
        neighbour the rule forbids is read from the tile's last state, BLOCK_S - 1,
        which is never an example's: ``L_b = 2U + 1`` is odd, as ctc_loss's checks and
        CtcLossModule's preparation make it, and the tile even; it holds -inf, its
        emission masked, so nothing a frame closes a neighbour), then the frame's
        emission (natural log)."""
        first, second = _neighbours(x, sources)
        return _lse3_2(x, first, second) + emit * LOG2E

    @triton.jit
    def _rescale(x):
        """x less its largest value (none reachable: unchanged), and that value."""
        shift = tl.max(x, axis=0)
        shift = tl.where(shift == float("-inf"), 0.0, shift)
        return x - shift, shift

    @triton.jit
    def _neighbours(x, index):
        """x at two other states per lane, ``index`` (2 * BLOCK_S,) interleaving the two
        sources: one shared-memory exchange, so both come back together and no row makes
        a global-memory round trip on the frame's critical path."""
        both = tl.reshape(tl.gather(x, index, 0), [x.shape[0], 2])
        return tl.split(both)

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
        """Example b's forward recursion: alpha rows (log2 units, each up to an offset)
        and the two final states (natural log).

        RESCALE_EVERY frames an iteration, unrolled: each frame's emission is fetched
        two frames ahead into the register its last use freed (no copy at the loop's
        end waits for it), the loop's bookkeeping is paid once for eight frames, and
        the rows are addressed from one pointer a program with int32 offsets a lane
        (per-lane pointers had the compiler carry eight 64-bit ones round the loop).
        The block max (the rescale) runs on each iteration's first frame: between rescales
        the largest state rises by at most log2(3) a frame (emissions are <= 0), so it
        cannot overflow, and log-domain values cannot underflow; the shifts are summed
        in float64. A state falls at most by the frames' emissions, so float32's
        rounding between rescales is that of RESCALE_EVERY frames' log-probabilities:
        every 16th frame put the float16 6000-frame gradient 5.2e-4 from native's
        float64 (2 of 384,000 values past its bound of 4.9e-4), every 8th within it."""
        s = tl.arange(0, BLOCK_S)
        n_states, n_frames, valid, label, may_skip = _example(
            labels_ptr, labels_len_ptr, logits_len_ptr, b, B, L, s)
        n_frames = n_frames.to(tl.int32)
        # Scalar row pointers (the frame's), int32 offsets a lane: an address is one
        # wide multiply-add, and no pointer a lane is carried round the loop.
        emit_row = lp_ptr + b * T * C  # frame t's row: + t * C
        lane = label.to(tl.int32)
        row = alpha_ptr + b * T * L
        sources = tl.reshape(tl.join(tl.where(valid & (s >= 1), s - 1, BLOCK_S - 1),
                                     tl.where(may_skip, s - 2, BLOCK_S - 1)), [2 * BLOCK_S])
        # The start vector is state 0 before frame 0 (what T_b = 0 reads): frame 0 then
        # enters state 0 (stay) or 1 (advance) by the same rule as every frame.
        log_alpha = tl.where(valid & (s == 0), 0.0, float("-inf"))
        total = tl.zeros([BLOCK_S], dtype=tl.float64)  # the summed shifts, in every lane
        emit_a = tl.load(emit_row + lane, mask=valid & (n_frames > 0), other=float("-inf"))
        emit_b = tl.load(emit_row + (lane + C), mask=valid & (n_frames > 1), other=float("-inf"))
        n_main = (n_frames // RESCALE_EVERY) * RESCALE_EVERY
        for t0 in range(0, n_main, RESCALE_EVERY):
            for j in tl.static_range(RESCALE_EVERY):
                log_alpha = _step(log_alpha, emit_a, sources)
                if j == 0:
                    log_alpha, shift = _rescale(log_alpha)
                    total += shift.to(tl.float64)
                tl.store(row + (s + j * L), log_alpha, mask=s < L)
                emit_a = emit_b
                if j + 2 < RESCALE_EVERY:
                    emit_b = tl.load(emit_row + (lane + (j + 2) * C), mask=valid,
                                     other=float("-inf"))
                else:
                    emit_b = tl.load(emit_row + (lane + (j + 2) * C),
                                     mask=valid & (t0 + j + 2 < n_frames), other=float("-inf"))
            emit_row += RESCALE_EVERY * C
            row += RESCALE_EVERY * L
        # The last n_frames - n_main (< 8) frames: straight code, no loop.
        for j in tl.static_range(RESCALE_EVERY - 1):
            if n_main + j < n_frames:
                log_alpha = _step(log_alpha, emit_a, sources)
                if j == 0:
                    log_alpha, shift = _rescale(log_alpha)
                    total += shift.to(tl.float64)
                tl.store(row + s, log_alpha, mask=s < L)
                row += L
                emit_a = emit_b
                emit_b = tl.load(emit_row + (lane + (j + 2) * C),
                                 mask=valid & (n_main + j + 2 < n_frames), other=float("-inf"))

        # Padded frames hold -inf: alpha is a defined output, bit for bit.
        for _frame in range(n_frames, T):
            tl.store(row + s, tl.full([BLOCK_S], float("-inf"), tl.float32), mask=s < L)
            row += L

        # Unnormalised log alpha of the last state and the one before it (Graves eq. 8).
        last = tl.sum(tl.where(s == n_states - 1, log_alpha, 0.0), axis=0).to(tl.float64)
        before = tl.sum(tl.where(s == n_states - 2, log_alpha, 0.0), axis=0).to(tl.float64)
        total_0 = tl.sum(tl.where(s == 0, total, 0.0), axis=0)
        final_a = ((last + total_0) * LN2_64).to(tl.float32)
        final_b = tl.where(n_states >= 2, ((before + total_0) * LN2_64).to(tl.float32),
                           float("-inf"))
        tl.store(finals_ptr + 2 * b, final_a, mask=b < B)
        tl.store(finals_ptr + 2 * b + 1, final_b, mask=b < B)

    @triton.jit
    def _beta_rows(lp_ptr, labels_ptr, labels_len_ptr, beta_ptr, b, n_run, B, T, C, L,
                   BLOCK_S: tl.constexpr):
        """Example b's backward variables over its first ``n_run`` frames: ``beta``
        (B, T, L) row t holds log2 beta of frame t *including* frame t's emission
        (Graves et al. 2006, eq. 10-11), up to an offset per row; RESCALE_EVERY frames
        an iteration with a rescale on the first, as alpha. Rows past ``n_run`` hold
        -inf."""
        s = tl.arange(0, BLOCK_S)
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0)
        n_run = n_run.to(tl.int32)
        valid = s < n_states
        label = tl.load(labels_ptr + b * L + s, mask=valid, other=0)
        label_p2 = tl.load(labels_ptr + b * L + s + 2, mask=valid & (s + 2 < n_states), other=-1)
        may_skip_out = valid & (s % 2 == 1) & (s + 2 < n_states) & (label != label_p2)  # s -> s + 2
        sources = tl.reshape(tl.join(tl.where(valid & (s + 1 < n_states), s + 1, BLOCK_S - 1),
                                     tl.where(may_skip_out, s + 2, BLOCK_S - 1)), [2 * BLOCK_S])

        # Frame T_b - 1: the two final states (one if L_b == 1) with their emission.
        # Scalar row pointers and int32 lane offsets, as alpha's.
        last = n_run - 1
        lane = label.to(tl.int32)
        emit_row = lp_ptr + b * T * C + last.to(tl.int64) * C
        row = beta_ptr + b * T * L + last.to(tl.int64) * L
        emit = tl.load(emit_row + lane, mask=valid & (n_run > 0), other=float("-inf"))
        log_beta, _ = _rescale(tl.where(valid & (s >= n_states - 2), emit * LOG2E,
                                        float("-inf")))
        tl.store(row + s, log_beta, mask=(s < L) & (n_run > 0))
        # Frames last - 1, last - 2, ...: i counts them from 1; the pointers stand at
        # frame last - i.
        emit_row -= C
        row -= L
        emit_a = tl.load(emit_row + lane, mask=valid & (n_run > 1), other=float("-inf"))
        emit_b = tl.load(emit_row + (lane - C), mask=valid & (n_run > 2), other=float("-inf"))
        # n_run = 0 runs nothing (max: no tail frame, whatever division rounds to).
        n_main = (tl.maximum(n_run - 1, 0) // RESCALE_EVERY) * RESCALE_EVERY
        for i0 in range(1, n_main + 1, RESCALE_EVERY):
            for j in tl.static_range(RESCALE_EVERY):
                log_beta = _step(log_beta, emit_a, sources)
                if j == 0:
                    log_beta, _ = _rescale(log_beta)
                tl.store(row + (s - j * L), log_beta, mask=s < L)
                emit_a = emit_b
                if j + 2 < RESCALE_EVERY:
                    emit_b = tl.load(emit_row + (lane - (j + 2) * C), mask=valid,
                                     other=float("-inf"))
                else:
                    emit_b = tl.load(emit_row + (lane - (j + 2) * C),
                                     mask=valid & (i0 + j + 2 < n_run), other=float("-inf"))
            emit_row -= RESCALE_EVERY * C
            row -= RESCALE_EVERY * L
        for j in tl.static_range(RESCALE_EVERY - 1):
            if n_main + 1 + j < n_run:
                log_beta = _step(log_beta, emit_a, sources)
                if j == 0:
                    log_beta, _ = _rescale(log_beta)
                tl.store(row + s, log_beta, mask=s < L)
                row -= L
                emit_a = emit_b
                emit_b = tl.load(emit_row + (lane - (j + 2) * C),
                                 mask=valid & (n_main + 3 + j < n_run), other=float("-inf"))

        # The other rows hold -inf: beta, when kept as an output, is defined bit for bit.
        row_ptr = beta_ptr + b * T * L + s + n_run.to(tl.int64) * L
        for _frame in range(n_run, T):
            tl.store(row_ptr, tl.full([BLOCK_S], float("-inf"), tl.float32), mask=s < L)
            row_ptr += L

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
                        order_ptr, sorted_labels_ptr, grad_ptr, B, T, C, L, frames_per_program,
                        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, ROWS: tl.constexpr):
        """``frames_per_program`` frames of one example's gradient, ``softmax -
        posterior`` (Graves et al. 2006, eq. 16) times the example's scale; the programs
        cover every (example, frame chunk) in parallel. The states are visited in an
        order sorted by class (``order``, made by the backward prologue kernel), read
        once a program, so each class's posteriors are summed by one segmented scan in
        a fixed order: no atomics, and the gradient is bitwise reproducible.

        The sorted states form a (ROWS, BLOCK_S // ROWS) tile, sorted position
        ``k = column * ROWS + row``: each thread holds ROWS consecutive positions, so
        the scan runs in-thread down each column, then once across the columns' totals
        (a 1-D scan over BLOCK_S positions scanned each thread's eight separately across
        the warp: eight times the shuffles)."""
        chunks = tl.cdiv(T, frames_per_program)
        b = tl.program_id(0).to(tl.int64) // chunks
        t0 = (tl.program_id(0).to(tl.int64) % chunks) * frames_per_program
        COLS: tl.constexpr = BLOCK_S // ROWS
        row = tl.arange(0, ROWS)[:, None]
        col = tl.arange(0, COLS)[None, :]
        k = col * ROWS + row  # sorted position, (ROWS, COLS)
        cls = tl.arange(0, BLOCK_C)
        # int32 lengths: a mask a frame is then one compare a lane, not two.
        n_states = tl.load(labels_len_ptr + b, mask=b < B, other=0).to(tl.int32)
        n_frames = tl.load(logits_len_ptr + b, mask=b < B, other=0).to(tl.int32)
        scale = tl.load(scale_ptr + b, mask=b < B, other=0.0)
        # scale == 0 (a loss not counted), no states or a padded frame: exactly 0.
        counted = (n_states > 0) & (scale != 0)
        # Position k sits at (k % ROWS) * COLS + k // ROWS of the prologue's rows.
        sorted_row = sorted_labels_ptr + b * BLOCK_S
        valid = k < n_states
        # int32 from here: eight of each a thread, half the registers of int64.
        state = tl.load(order_ptr + b * BLOCK_S + row * COLS + col, mask=valid,
                        other=0).to(tl.int32)
        cls_sorted = tl.load(sorted_row + row * COLS + col, mask=valid, other=-1).to(tl.int32)
        before = k - 1
        cls_before = tl.load(sorted_row + (before % ROWS) * COLS + before // ROWS,
                             mask=valid & (k >= 1), other=-1)
        after = k + 1
        cls_after = tl.load(sorted_row + (after % ROWS) * COLS + after // ROWS,
                            mask=valid & (after < n_states), other=-1)
        cls_at = tl.maximum(cls_sorted, 0)
        seg_start = ((k == 0) | (cls_sorted != cls_before)).to(tl.int32)
        seg_end = valid & ((after >= n_states) | (cls_sorted != cls_after))
        columns = tl.arange(0, COLS)
        t_end = tl.minimum(t0 + frames_per_program, T)
        # Scalar row pointers, int32 lane offsets: one wide multiply-add an address.
        a_row = alpha_ptr + (b * T + t0) * L
        b_row = beta_ptr + (b * T + t0) * L
        lp_row = lp_ptr + (b * T + t0) * C
        grad_row = grad_ptr + (b * T + t0) * C
        n_run = (t_end - t0).to(tl.int32)
        for i in range(0, n_run):
            active = counted & (t0 + i < n_frames)
            # Unmasked: every address is inside the (B, T', L) and (B, T', C) rows (a
            # padded position reads state 0 and class 0), and what a padded position
            # or an inactive frame reads is never used.
            log_a = tl.load(a_row + state)
            log_b = tl.load(b_row + state)
            emit = tl.load(lp_row + cls_at)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + cls
                lp = tl.load(lp_row + c, mask=(c < C) & active, other=float("-inf"))
                tl.store(grad_row + c, tl.where(active, tl.exp(lp) * scale, 0.0), mask=c < C)
            if active:
                # A state that cannot emit here (-inf) has posterior 0, not -inf - -inf.
                emits = valid & (emit > float("-inf"))
                # alpha and beta are in log2 units, each row up to an offset of its own,
                # which the frame's max removes.
                ab = tl.where(emits, log_a + log_b - tl.where(emits, emit, 0.0) * LOG2E,
                              float("-inf"))
                m = tl.max(tl.max(ab, axis=0), axis=0)
                m = tl.where(m == float("-inf"), 0.0, m)
                weight = tl.exp2(ab - m)
                posterior = weight * (scale / tl.sum(tl.sum(weight, axis=0), axis=0))
                # Down each column (in-thread), then across the columns' totals.
                down, started = tl.associative_scan((posterior, seg_start), 0, _segment_add)
                total = tl.sum(tl.where(row == ROWS - 1, down, 0.0), axis=0)  # (COLS,)
                opened = tl.max(tl.where(row == ROWS - 1, started, 0), axis=0)
                across, _ = tl.associative_scan((total, opened), 0, _segment_add)
                carry = tl.gather(across, tl.maximum(columns - 1, 0), 0)  # the column before
                carry = tl.where(columns == 0, 0.0, carry)
                summed = tl.where(started != 0, down, down + carry[None, :])
                tl.debug_barrier()  # the softmax row is written before the label classes' fix
                tl.store(grad_row + cls_sorted, tl.exp(emit) * scale - summed, mask=seg_end)
            a_row += L
            b_row += L
            lp_row += C
            grad_row += C

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
        per = grad_frames(batch, frames)
        ctc_grad_kernel[(batch * triton.cdiv(frames, per),)](
            log_probs, labels_len, logits_len, alpha, beta, scale, order, sorted_labels, grad,
            batch, frames, classes, width, per, BLOCK_S=block, BLOCK_C=block_c,
            ROWS=triton_wrapper.GRAD_ROWS, num_warps=grad_warps(block, block_c))
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
    # i32, as the JIT specialises them at run time (any size below 2**31; the kernels
    # widen the offsets that need it through the int64 program ids).
    scalars = {"B": "i32", "T": "i32", "C": "i32", "L": "i32"}
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
                                 grad_ptr=fp32, **scalars, frames_per_program="i64",
                                 BLOCK_S="constexpr", BLOCK_C="constexpr",
                                 ROWS="constexpr"),
           {"BLOCK_C": block_c, "ROWS": triton_wrapper.GRAD_ROWS},
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
