"""The Triton kernels: against torch.nn.functional.ctc_loss in float64 and against the
C kernel, on small random batches, under Triton's interpreter on CPU (or on a GPU when
there is one); and compiled ahead of time for sm_90, which needs no GPU.

The interpreter runs each program in NumPy: slow, so the batches are small. Its blind
spots (barriers are no-ops, no bounds checks, code the compiler would reject) are why
the ahead-of-time compile runs too.
"""
import contextlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import require, triton_module_marks, use_backend
from parity_tests import tolerances as tol
from parity_tests.cases import min_frames, random_case

require({"triton": "3.0"}, "test")
ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = triton_module_marks(DEVICE, "ignore:.*cannot be aligned:UserWarning")


@contextlib.contextmanager
def using(name):
    """Runs the block on backend ``name`` (skipped where it cannot run; CI fails)."""
    with pytest.MonkeyPatch.context() as mp:
        use_backend(mp, name, DEVICE)
        yield


def loss_and_grad(case, exact, zero_infinity=False, dtype=torch.float32):
    x = torch.tensor(case.logits, dtype=dtype, device=DEVICE, requires_grad=True)
    args = [torch.tensor(a, device=DEVICE) for a in (case.aug_labels, case.aug_len,
                                                     case.logits_len)]
    loss = S.ctc_loss(args[0], args[1], x, args[2], exact=exact, zero_infinity=zero_infinity)
    loss.backward(torch.tensor(case.weights, device=DEVICE))
    return loss.detach().cpu(), x.grad.cpu()


def native_float64(case, zero_infinity):
    """torch.nn.functional.ctc_loss in float64: loss (B,) and weighted gradient."""
    frames = torch.tensor(case.logits_len).long()
    x = torch.tensor(case.logits, dtype=torch.float64, requires_grad=True)
    clean = torch.where(torch.arange(x.shape[1])[None, :, None] < frames[:, None, None], x, 0.0)
    targets = torch.tensor(case.aug_labels).long()[:, 1::2]
    lengths = (torch.tensor(case.aug_len).long() - 1) // 2
    loss = torch.nn.functional.ctc_loss(clean.log_softmax(-1).transpose(0, 1), targets, frames,
                                        lengths, blank=case.blank, reduction="none",
                                        zero_infinity=zero_infinity)
    loss.backward(torch.tensor(case.weights, dtype=torch.float64))
    grad = torch.where(torch.isfinite(loss)[:, None, None], x.grad, 0.0)
    return loss.detach(), grad


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), zero_infinity=st.booleans(), tight=st.booleans())
def test_exact_loss_equals_native_float64(seed, zero_infinity, tight):
    rng = np.random.default_rng(seed)
    # At least one padded frame: native refuses a time axis of length 0.
    case = random_case(rng, batch=int(rng.integers(1, 4)), max_time=int(rng.integers(0, 16)),
                       max_label=int(rng.integers(0, 5)), classes=int(rng.integers(2, 7)),
                       pad_labels=int(rng.integers(0, 2)), pad_time=int(rng.integers(1, 3)),
                       tight=tight)
    with using("triton"):
        loss, grad = loss_and_grad(case, exact=True, zero_infinity=zero_infinity)
    want_loss, want_grad = native_float64(case, zero_infinity)
    assert torch.equal(torch.isinf(loss), torch.isinf(want_loss))
    finite = torch.isfinite(want_loss)
    tol.assert_within(loss[finite], want_loss[finite], tol.LOSS, "loss")
    tol.assert_within(grad, want_grad, tol.GRAD, "gradient")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), exact=st.booleans(), tight=st.booleans())
def test_equals_the_c_kernel(seed, exact, tight):
    if DEVICE != "cpu":
        pytest.skip("the C kernel runs on CPU tensors only")
    rng = np.random.default_rng(seed)
    case = random_case(rng, batch=int(rng.integers(1, 4)), max_time=int(rng.integers(0, 16)),
                       max_label=int(rng.integers(0, 5)), classes=int(rng.integers(2, 7)),
                       pad_labels=int(rng.integers(0, 2)), pad_time=int(rng.integers(0, 3)),
                       tight=tight)
    with using("triton"):
        got = loss_and_grad(case, exact)
    with using("c-kernel"):
        want = loss_and_grad(case, exact)
    tol.assert_within(got[0], want[0], tol.LOSS, "loss")
    tol.assert_within(got[1], want[1], tol.GRAD, "gradient")


# One label length per state block: L = 2U + 1 fills BLOCK_S = 16, 32, 64, 128 and 256
# (the random tests above stay at U <= 4, the 16-state block only).
BLOCK_CASES = {16: 5, 32: 12, 64: 28, 128: 60, 256: 127}


@pytest.mark.parametrize("per", [2, 3, 8, 16])
def test_gradient_programs_of_several_frames_equal_one_frame_programs(per):
    # A program covers up to 16 frames when the batch fills the GPU (grad_frames); the
    # small batches here get one. Forced: 3 does not divide T, 8 exceeds some T_b, 16 all.
    from _seq_loss_kernels import triton_ctc

    rng = np.random.default_rng(per)
    case = random_case(rng, batch=3, max_time=13, max_label=4, classes=6, pad_time=2)
    with using("triton"):
        one = loss_and_grad(case, exact=True)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(triton_ctc, "grad_frames", lambda batch, frames: per)
            several = loss_and_grad(case, exact=True)
    assert torch.equal(one[1], several[1])  # each frame's arithmetic is the same
    want_loss, want_grad = native_float64(case, False)
    tol.assert_within(several[1], want_grad, tol.GRAD, "gradient")


def test_gradient_frames_per_program():
    from _seq_loss_kernels import triton_ctc

    assert triton_ctc.grad_frames(4, 50) == 1  # 200 frames: one each, to fill the SMs
    assert triton_ctc.grad_frames(32, 400) == 8  # 12800 frames: 8 a program, 12 per SM
    assert triton_ctc.grad_frames(8, 200) == 1
    assert triton_ctc.grad_frames(8, 1000) == 4
    assert triton_ctc.grad_frames(32, 1500) == 16  # 48000 frames: 16 a program, 23 per SM


@pytest.mark.parametrize("block", sorted(BLOCK_CASES), ids=lambda b: f"BLOCK_S={b}")
def test_every_state_block_equals_native_float64(block):
    from _seq_loss_kernels import triton_ctc

    rng = np.random.default_rng(block)
    case = random_case(rng, batch=2, max_time=1, max_label=BLOCK_CASES[block], classes=9,
                       min_label=BLOCK_CASES[block], pad_time=1)
    # Enough frames for every label, plus a few: T = U + repeats + 0 and + 7.
    case.logits_len = (min_frames(case.raw_labels, case.raw_len) + np.array([0, 7])).astype(
        np.int32)
    case.logits = (rng.standard_normal((2, int(case.logits_len.max()) + 1, 9)) * 3).astype(
        np.float32)
    assert triton_ctc.block_states(case.aug_labels.shape[1]) == block
    with using("triton"):
        loss, grad = loss_and_grad(case, exact=True)
    want_loss, want_grad = native_float64(case, False)
    assert torch.isfinite(want_loss).all()
    tol.assert_within(loss, want_loss, tol.LOSS, "loss")
    tol.assert_within(grad, want_grad, tol.GRAD, "gradient")
    if DEVICE == "cpu":
        logits = torch.tensor(case.logits)
        labels = torch.tensor(case.aug_labels[:, 1::2]).long()
        lengths = (torch.tensor(case.aug_len).long() - 1) // 2
        frames = torch.tensor(case.logits_len).long()
        with using("triton"):
            got = S.forced_align(logits, labels, frames, lengths, blank=case.blank)
        with using("c-kernel"):
            want = S.forced_align(logits, labels, frames, lengths, blank=case.blank)
        assert torch.equal(got.states, want.states)


@pytest.mark.parametrize("block", [16, 32, 64], ids=lambda b: f"BLOCK_S={b}")
def test_a_full_tile_with_spare_frames_equals_native_float64(block):
    # L = BLOCK_S - 1: every state but the tile's last is an example's. A neighbour the
    # rule closes is read from that last state (always -inf); with frames to spare the
    # final states hold much of the mass, so reading any other state instead shows.
    from _seq_loss_kernels import triton_ctc

    rng = np.random.default_rng(block + 1)
    units = block // 2 - 1
    case = random_case(rng, batch=2, max_time=1, max_label=units, classes=6,
                       min_label=units, pad_time=1)
    case.logits_len = (min_frames(case.raw_labels, case.raw_len) + np.array([12, 30])).astype(
        np.int32)
    case.logits = (rng.standard_normal((2, int(case.logits_len.max()), 6)) * 2).astype(
        np.float32)
    assert case.aug_labels.shape[1] == block - 1
    assert triton_ctc.block_states(case.aug_labels.shape[1]) == block
    with using("triton"):
        loss, grad = loss_and_grad(case, exact=True)
    want_loss, want_grad = native_float64(case, False)
    tol.assert_within(loss, want_loss, tol.LOSS, "loss")
    tol.assert_within(grad, want_grad, tol.GRAD, "gradient")


def test_viterbi_paths_equal_the_c_kernel():
    if DEVICE != "cpu":
        pytest.skip("the C kernel runs on CPU tensors only")
    torch.manual_seed(0)
    logits = torch.randn(5, 18, 6) * 3
    labels = torch.tensor([[1, 2, 2, 3], [4, 4, -1, -1], [5, -1, -1, -1], [1, 2, 3, 4],
                           [-1, -1, -1, -1]])
    lengths = torch.tensor([18, 9, 3, 3, 0])  # repeats, an infeasible one, T_b = 0, U = 0
    with using("triton"):
        got = S.forced_align(logits, labels, lengths, strict=False)
    with using("c-kernel"):
        want = S.forced_align(logits, labels, lengths, strict=False)
    assert torch.equal(got.states, want.states)
    assert torch.equal(torch.isinf(got.log_prob), torch.isinf(want.log_prob))
    torch.testing.assert_close(got.log_prob, want.log_prob, atol=1e-4, rtol=1e-6)


def test_nan_and_padding_and_determinism():
    torch.manual_seed(1)
    logits = torch.randn(3, 12, 5, device=DEVICE)
    labels = torch.tensor([[0, 1, 0, 2, 0, 2, 0], [0, 3, 0, -100, -100, -100, -100],
                           [0, 4, 0, 4, 0, 1, 0]], device=DEVICE)
    aug_len = torch.tensor([7, 3, 7], device=DEVICE)
    lengths = torch.tensor([12, 8, 12], device=DEVICE)

    def run(x):
        x = x.clone().requires_grad_(True)
        with using("triton"):
            loss = S.ctc_loss(labels, aug_len, x, lengths, exact=True)
            loss.sum().backward()
        return loss.detach(), x.grad

    clean = run(logits)
    again = run(logits)
    assert torch.equal(clean[0], again[0]) and torch.equal(clean[1], again[1])  # bitwise
    poisoned = logits.clone()
    poisoned[1, 3, 2] = math.nan
    loss, grad = run(poisoned)
    assert torch.isnan(loss[1]) and torch.isnan(grad[1, :8]).all() and (grad[1, 8:] == 0).all()
    assert torch.equal(loss[[0, 2]], clean[0][[0, 2]])
    assert torch.equal(grad[[0, 2]], clean[1][[0, 2]])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype):
    rng = np.random.default_rng(3)
    case = random_case(rng, batch=2, max_time=10, max_label=3, classes=5, garbage=False)
    with using("triton"):
        loss, grad = loss_and_grad(case, exact=True, dtype=dtype)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    low = torch.tensor(case.logits).to(dtype).double().numpy()
    case.logits = low  # the float64 truth of the rounded inputs
    want, _ = native_float64(case, False)
    tol.assert_within(loss, want, tol.LOSS, "loss")


def test_float64_and_wide_labels_run_the_pytorch_backend():
    with using("triton"):
        assert S._select_backend(DEVICE, torch.float32, 4095).name == "triton"
        assert S._select_backend(DEVICE, torch.float64, 10).name == "pytorch"
        assert S._select_backend(DEVICE, torch.float32, 4097).name == "pytorch"


def test_compiles_ahead_of_time_for_sm_90():
    """Every kernel at every block size, compiled for an H100-class GPU (sm_90) in a
    process without the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    code = textwrap.dedent("""
        from _seq_loss_kernels import triton_ctc
        results = triton_ctc.aot_compile()
        failed = [r for r in results if not r[2].asm.get("cubin")]
        print(len(results), "configurations compiled;", len(failed), "failed")
        raise SystemExit(1 if failed else 0)
    """)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "117 configurations compiled; 0 failed" in result.stdout


def test_memory_is_alpha_and_beta_and_a_second_backward_agrees():
    """Beside the log-probabilities and the gradient, a training step holds two
    (B, T, L) tensors (alpha and beta, computed side by side in the forward), as native
    does during its backward; without a gradient only alpha. A second backward
    (retain_graph) gives the same gradient."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Allocations(TorchDispatchMode):
        def __init__(self, shape):
            super().__init__()
            self.shape, self.count = shape, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            # Allocations only: the interpreter copies arguments to run a kernel.
            if func.__name__.split(".")[0] in ("empty", "empty_like", "new_empty",
                                               "empty_strided", "zeros", "full", "new_full",
                                               "new_zeros", "zeros_like", "full_like"):
                # (2, B, T, L) is alpha and beta side by side: two of them.
                if tuple(out.shape[-3:]) == self.shape:
                    self.count += out.numel() // math.prod(self.shape)
            return out

    torch.manual_seed(4)
    logits = torch.randn(3, 11, 6, device=DEVICE)
    labels = torch.tensor([[1, 2, 2], [3, 4, 5], [5, 1, 2]], device=DEVICE)
    width = 2 * 3 + 1
    with using("triton"):
        x = logits.clone().requires_grad_(True)
        with Allocations((3, 11, width)) as seen:
            loss = S.CtcLossModule(reduction="sum")(x, labels)
            loss.backward(retain_graph=True)
        assert seen.count == 2
        first = x.grad.clone()
        x.grad = None
        loss.backward()
        assert torch.equal(x.grad, first)
        with torch.no_grad(), Allocations((3, 11, width)) as seen:
            S.CtcLossModule(reduction="sum")(logits, labels)
        assert seen.count == 1
