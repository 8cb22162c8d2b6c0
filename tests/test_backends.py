"""The compiled CPU kernel and the pure PyTorch backend give the same numbers.

The rest of the suite runs with whichever backend is active (the kernel where a C
compiler exists); this file checks one against the other, and the fallback.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import need_c_kernel
from parity_tests import golden, tolerances as tol
from parity_tests.cases import random_case

# Infeasible examples on purpose; tests/test_misuse.py tests the warning naming them.
pytestmark = pytest.mark.filterwarnings("ignore:.*cannot be aligned:UserWarning")


@pytest.fixture(autouse=True, scope="module")
def kernel_built():
    """Every test here switches between the two backends itself, so the kernel must
    be there even in the suite's pure-PyTorch run (skipped without it; CI fails)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQ_LOSS_UTIL_KERNEL", "1")
        need_c_kernel()


def run(monkeypatch, kernel, case, exact, dtype=torch.float32):
    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "1" if kernel else "0")
    assert S.backend("cpu") == ("c-kernel" if kernel else "pytorch")
    x = torch.tensor(case.logits, dtype=dtype, requires_grad=True)
    loss = S.ctc_loss(torch.tensor(case.aug_labels), torch.tensor(case.aug_len), x,
                      torch.tensor(case.logits_len), exact=exact)
    loss.backward(torch.tensor(case.weights, dtype=dtype))
    return loss.detach(), x.grad


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), exact=st.booleans(), batch=st.integers(1, 9),
       double=st.booleans(), tight=st.booleans())
def test_kernel_equals_pytorch_backend(seed, exact, batch, double, tight):
    monkeypatch = pytest.MonkeyPatch()
    try:
        rng = np.random.default_rng(seed)
        case = random_case(rng, batch=batch, max_time=int(rng.integers(1, 120)),
                           max_label=int(rng.integers(0, 30)),
                           classes=int(rng.integers(2, 40)), pad_labels=1, pad_time=2,
                           tight=tight)
        dtype = torch.float64 if double else torch.float32
        loss_k, grad_k = run(monkeypatch, True, case, exact, dtype)
        loss_t, grad_t = run(monkeypatch, False, case, exact, dtype)
    finally:
        monkeypatch.undo()
    bounds = (tol.LOSS, tol.GRAD) if not double else (dict(atol=1e-9, rtol=1e-9),) * 2
    torch.testing.assert_close(loss_k, loss_t, **bounds[0])
    torch.testing.assert_close(grad_k, grad_t, **bounds[1])


@pytest.mark.parametrize("name", [c["name"] for c in golden.end_to_end_cases()])
def test_pytorch_backend_on_recorded_data(monkeypatch, name):
    """The fallback also matches the original's recorded loss and gradient."""
    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
    case = golden.case(name)
    x = torch.tensor(case["logits"], requires_grad=True)
    loss = S.ctc_loss(torch.tensor(case["aug_labels"]), torch.tensor(case["aug_len"]), x,
                      torch.tensor(case["logits_len"]))
    loss.backward(torch.tensor(case["upstream_weights"]))
    finite = np.isfinite(case["loss"])
    np.testing.assert_allclose(loss.detach().numpy()[finite], case["loss"][finite], **tol.LOSS)
    ok = np.isfinite(case["grad_weighted"])
    np.testing.assert_allclose(x.grad.numpy()[ok], case["grad_weighted"][ok], **tol.GRAD)


def test_missing_compiler_falls_back_with_a_warning(monkeypatch, tmp_path):
    from _seq_loss_kernels import cpu

    monkeypatch.setattr(cpu, "_kernel_lib", None)
    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "1")
    monkeypatch.setenv("SEQ_LOSS_UTIL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="compiled CTC kernel is unavailable"):
        assert S.backend("cpu") == "pytorch"
    x = torch.randn(1, 4, 3, requires_grad=True)
    S.ctc_loss(torch.tensor([[0, 1, 0]]), torch.tensor([3]), x, torch.tensor([4])).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kernel", ["1", "0"])
def test_no_label_by_label_tensor(monkeypatch, kernel):
    """The loss path is banded: no tensor has the augmented label axis L twice."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.seen.append(tuple(t.shape))
            return out

    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", kernel)
    width = 13  # B=3, T=17, C=5, L=2*6+1=13: no other axis is 13 long
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.randint(0, 4, (3, 6)),
                                       "SEQ_LEN": torch.tensor([6, 4, 2])}, 0)
    x = torch.randn(3, 17, 5, requires_grad=True)
    with Shapes() as mode:
        S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], x, torch.tensor([17, 15, 9]),
                   exact=True).sum().backward()
    assert mode.seen, "no op was recorded"
    assert any(width in shape for shape in mode.seen)
    assert not [s for s in mode.seen if list(s).count(width) >= 2]
