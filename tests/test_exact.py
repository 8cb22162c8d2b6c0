"""Exact mode: equal to torch.nn.functional.ctc_loss in loss and gradient; gradcheck.

The default (original) mode returns minus the *max* of the two final states but the
gradient of minus their *log-sum-exp*, as the original does, so its loss and gradient
disagree by design and gradcheck cannot pass there: that is tested too.
"""
import math

import numpy as np
import pytest
import torch
from torch.autograd.gradcheck import GradcheckError
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from parity_tests import tolerances as tol
from parity_tests.cases import tight_lengths

# These tests build infeasible examples on purpose; the warning that names them is
# tested in tests/test_misuse.py.
pytestmark = pytest.mark.filterwarnings("ignore:.*cannot be aligned:UserWarning")

FLOAT64 = dict(atol=1e-9, rtol=1e-9)


def random_batch(data, dtype):
    batch = data.draw(st.integers(1, 6), label="B")
    classes = data.draw(st.integers(2, 12), label="C")
    blank = data.draw(st.integers(0, classes - 1), label="blank")
    width = data.draw(st.integers(0, 12), label="U")
    frames = data.draw(st.integers(1, 40), label="T")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    # A small alphabet half of the time, so adjacent repeats are common.
    alphabet = classes - 1 if rng.random() < 0.5 else min(classes - 1, 2)
    raw = torch.from_numpy(rng.integers(0, alphabet, (batch, width)))
    raw_len = torch.from_numpy(rng.integers(0, width + 1, batch))
    logits_len = torch.from_numpy(rng.integers(0, frames + 1, batch))
    if data.draw(st.booleans(), label="tight"):  # T = U + repeats, one fewer, or 2U + 1
        logits_len = torch.from_numpy(tight_lengths(rng, raw.numpy(), raw_len.numpy()))
        frames = max(frames, int(logits_len.max()))
    scale = float(rng.choice([0.5, 2.0, 8.0]))
    logits = torch.from_numpy(rng.standard_normal((batch, frames, classes)) * scale).to(dtype)
    return raw, raw_len, blank, logits, logits_len


def native(raw, raw_len, blank, logits, logits_len, zero_infinity):
    """torch.nn.functional.ctc_loss with autograd: loss (B,) and d sum(loss) / d logits.

    It runs in float64 on the same logits. The native kernel works in unnormalised log
    space, so its own float32 rounding reaches 1e-4 in the gradient at losses near 400
    (seen: 1.05e-4 from the float64 answer, where this port is within 1e-6); float64
    makes it the exact yardstick that the float32 tolerances are meant for.
    """
    x = logits.double().requires_grad_(True)
    targets = torch.where(raw >= blank, raw + 1, raw)  # the original's id shift
    loss = torch.nn.functional.ctc_loss(x.log_softmax(-1).transpose(0, 1), targets, logits_len,
                                        raw_len, blank=blank, reduction="none",
                                        zero_infinity=zero_infinity)
    loss.sum().backward()
    loss, grad = loss.detach(), x.grad
    # With no frames the answer is known in closed form: the empty label has
    # probability 1, any other 0. torch 2.1's native kernel returns uninitialised
    # values there (seen: -6.9e-310 and -0.69), so the yardstick states it directly.
    no_frames = logits_len == 0
    empty_loss = torch.where(raw_len == 0, 0.0, 0.0 if zero_infinity else math.inf)
    loss = torch.where(no_frames, empty_loss.double(), loss)
    grad = torch.where(no_frames[:, None, None], 0.0, grad)
    return loss.to(logits.dtype), grad.to(logits.dtype)


def ours(raw, raw_len, blank, logits, logits_len, zero_infinity):
    aug = S.to_blank_augmented_labels({"SEQ_DATA": raw, "SEQ_LEN": raw_len}, blank)
    x = logits.clone().requires_grad_(True)
    loss = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], x, logits_len, exact=True,
                      zero_infinity=zero_infinity)
    loss.sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_exact_equals_native(dtype, data):
    zero_infinity = data.draw(st.booleans(), label="zero_infinity")
    args = random_batch(data, dtype)
    loss, grad = ours(*args, zero_infinity)
    want_loss, want_grad = native(*args, zero_infinity)
    bounds = (tol.LOSS, tol.GRAD) if dtype == torch.float32 else (FLOAT64, FLOAT64)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert torch.equal(torch.isinf(loss), torch.isinf(want_loss))
    feasible = torch.isfinite(want_loss)
    torch.testing.assert_close(loss[feasible], want_loss[feasible], **bounds[0])
    # Native's gradient is NaN for an infeasible example unless zero_infinity; ours is 0.
    grad_ok = feasible | zero_infinity
    torch.testing.assert_close(grad[grad_ok], want_grad[grad_ok], **bounds[1])
    assert bool((grad[~feasible] == 0).all())


def test_feasibility_rule():
    """Feasible exactly when T >= U + adjacent repeats: [1, 1, 2] needs 4 frames."""
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 1, 2]] * 3),
                                       "SEQ_LEN": torch.tensor([3] * 3)}, 0)
    logits = torch.randn(3, 5, 4)
    loss = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.tensor([3, 4, 5]),
                      exact=True)
    assert torch.isinf(loss[0]) and torch.isfinite(loss[1:]).all()
    zeroed = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.tensor([3, 4, 5]),
                        exact=True, zero_infinity=True)
    assert zeroed[0] == 0 and torch.equal(zeroed[1:], loss[1:])


def test_single_path_closed_form():
    """T = U + repeats leaves one alignment: loss = -sum of its log-probabilities and
    gradient = softmax - one-hot (optax's closed-form test)."""
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 4, dtype=torch.float64, requires_grad=True)
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 1, 2]]),
                                       "SEQ_LEN": torch.tensor([3])}, 0)
    loss = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.tensor([4]), exact=True)
    loss.sum().backward()
    path = torch.tensor([2, 0, 2, 3])  # classes after the shift: 1 1 -> 2 blank 2, 2 -> 3
    log_probs = logits.detach()[0].log_softmax(-1)
    torch.testing.assert_close(loss[0], -log_probs[torch.arange(4), path].sum(), **FLOAT64)
    want = log_probs.exp() - torch.nn.functional.one_hot(path, 4)
    torch.testing.assert_close(logits.grad[0], want, **FLOAT64)


def _gradcheck_case():
    torch.manual_seed(1)
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 1, 2], [2, 0, 0]]),
                                       "SEQ_LEN": torch.tensor([3, 1])}, 0)
    logits = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    return aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.tensor([9, 6])


def test_gradcheck_exact():
    labels, labels_len, logits, logits_len = _gradcheck_case()
    for zero_infinity in (False, True):
        assert torch.autograd.gradcheck(
            lambda x, zero_infinity=zero_infinity: S.ctc_loss(
                labels, labels_len, x, logits_len, exact=True, zero_infinity=zero_infinity),
            (logits,), eps=1e-6, atol=1e-7)


def test_gradcheck_fails_in_the_original_mode_by_design():
    """The original's loss takes a max where its gradient uses a log-sum-exp."""
    labels, labels_len, logits, logits_len = _gradcheck_case()
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda x: S.ctc_loss(labels, labels_len, x, logits_len),
                                 (logits,), eps=1e-6, atol=1e-7)
    # The analytic gradient is the same in both modes; it is the exact loss's derivative.
    grads = []
    for exact in (False, True):
        x = logits.detach().clone().requires_grad_(True)
        S.ctc_loss(labels, labels_len, x, logits_len, exact=exact).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    # And the default loss sits above the exact one by less than log 2.
    default = S.ctc_loss(labels, labels_len, logits, logits_len)
    exact = S.ctc_loss(labels, labels_len, logits, logits_len, exact=True)
    gap = (default - exact).detach()
    assert bool(((gap >= 0) & (gap <= np.log(2) + 1e-12)).all())
