"""Second derivatives of the exact loss: gradgradcheck in float64 on random small
batches (repeats, padding, varied lengths, infeasible examples zeroed), on both CPU
backends, through ctc_loss(..., exact=True) and CtcLossModule; and the original mode's
refusal, which names the reason and the fix."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import use_backend

BACKENDS = ["c-kernel", "pytorch"]


def random_batch(seed):
    rng = np.random.default_rng(seed)
    batch, frames, classes = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(2, 5))
    width = int(rng.integers(0, 4))
    raw = torch.from_numpy(rng.integers(1, min(classes, 3), (batch, width)))  # repeats often
    raw_len = torch.from_numpy(rng.integers(0, width + 1, batch))
    logits_len = torch.from_numpy(rng.integers(0, frames + 1, batch))
    logits = torch.from_numpy(rng.standard_normal((batch, frames + 1, classes)))  # a padded frame
    return raw, raw_len, logits.double(), logits_len


def use(monkeypatch, backend):
    use_backend(monkeypatch, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradgradcheck_ctc_loss_exact(monkeypatch, backend):
    use(monkeypatch, backend)

    @settings(max_examples=12, deadline=None)
    @given(seed=st.integers(0, 2**32 - 1))
    def check(seed):
        raw, raw_len, logits, logits_len = random_batch(seed)
        aug = S.to_blank_augmented_labels({"SEQ_DATA": raw, "SEQ_LEN": raw_len}, 0, True, False)

        def loss(x):
            return S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], x, logits_len, exact=True,
                              zero_infinity=True)

        x = logits.requires_grad_(True)
        assert torch.autograd.gradgradcheck(loss, (x,), eps=1e-6, atol=1e-5)

    check()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradgradcheck_module(monkeypatch, backend, reduction):
    use(monkeypatch, backend)
    raw = torch.tensor([[1, 2, 2], [3, -100, -100], [2, 1, -100]])
    logits_len = torch.tensor([7, 4, 5])
    ctc = S.CtcLossModule(reduction=reduction)
    x = torch.randn(3, 8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda x: ctc(x, raw, logits_len), (x,), eps=1e-6,
                                        atol=1e-5)


def test_gradient_with_a_graph_equals_the_kernels_gradient():
    raw = torch.tensor([[1, 2, 2], [3, 1, 0]])
    raw_len = torch.tensor([3, 2])
    aug = S.to_blank_augmented_labels({"SEQ_DATA": raw, "SEQ_LEN": raw_len}, 0, True, False)
    x = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, 0.5], dtype=torch.float64)
    loss = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], x, torch.tensor([9, 6]), exact=True)
    (first,) = torch.autograd.grad(loss, x, weights, retain_graph=True)
    (with_graph,) = torch.autograd.grad(loss, x, weights, create_graph=True)
    assert with_graph.requires_grad
    torch.testing.assert_close(with_graph, first, atol=1e-10, rtol=1e-9)
    # A gradient penalty trains: its own gradient exists and is finite.
    penalty = with_graph.pow(2).sum()
    (second,) = torch.autograd.grad(penalty, x)
    assert torch.isfinite(second).all() and second.abs().sum() > 0


def test_original_mode_refuses_create_graph_with_reason_and_fix():
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 2]]),
                                       "SEQ_LEN": torch.tensor([2])}, 0)
    x = torch.randn(1, 6, 4, requires_grad=True)
    loss = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], x, torch.tensor([6]))
    with pytest.raises(RuntimeError, match=r"no second derivative: its gradient is the exact "
                                           r"CTC gradient.*exact=True.*CtcLossModule"):
        torch.autograd.grad(loss.sum(), x, create_graph=True)
