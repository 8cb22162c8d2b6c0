"""CtcLossModule: the usual batch-first PyTorch interface, checked against torch.nn.CTCLoss."""
import pytest
import torch

import seq_loss_util as S
from parity_tests import golden, tolerances as tol

# These tests build infeasible examples on purpose; the warning that names them is
# tested in tests/test_misuse.py.
pytestmark = pytest.mark.filterwarnings("ignore:.*cannot be aligned:UserWarning")


def hf_batch(seed=0, batch=5, frames=30, classes=9, width=7, blank=0):
    """Hugging Face style: class ids padded with -100 at the end."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, classes, generator=g) * 2
    lengths = torch.randint(0, width + 1, (batch,), generator=g)
    labels = torch.randint(0, classes - 1, (batch, width), generator=g)
    labels = labels + (labels >= blank).long()  # class ids, never the blank
    labels[torch.arange(width)[None, :] >= lengths[:, None]] = -100
    logits_len = torch.randint(frames // 2, frames + 1, (batch,), generator=g)
    return logits, labels, lengths, logits_len


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("blank", [0, 4, 8])
def test_equals_torch_ctc_loss(reduction, blank):
    logits, labels, lengths, logits_len = hf_batch(blank=blank)
    x = logits.clone().requires_grad_(True)
    ours = S.CtcLossModule(blank=blank, reduction=reduction)(x, labels, logits_len)
    ours.sum().backward()
    y = logits.clone().requires_grad_(True)
    native = torch.nn.CTCLoss(blank=blank, reduction=reduction)(
        y.log_softmax(-1).transpose(0, 1), labels.clamp(min=0), logits_len, lengths)
    native.sum().backward()
    torch.testing.assert_close(ours, native, **tol.LOSS)
    torch.testing.assert_close(x.grad, y.grad, **tol.GRAD)


def test_explicit_lengths_ignore_padding_values():
    logits, labels, lengths, logits_len = hf_batch(seed=1)
    module = S.CtcLossModule(reduction="none")
    want = module(logits, labels, logits_len)
    garbage = torch.where(labels < 0, 3, labels)  # padding now holds a real class id
    torch.testing.assert_close(module(logits, garbage, logits_len, lengths), want,
                               rtol=0, atol=0)


def test_all_frames_valid_by_default():
    logits, labels, _, _ = hf_batch(seed=2)
    module = S.CtcLossModule(reduction="none")
    full = torch.full((logits.shape[0],), logits.shape[1])
    torch.testing.assert_close(module(logits, labels), module(logits, labels, full),
                               rtol=0, atol=0)


def test_original_convention_and_mode():
    """shift_labels=True and exact=False reproduce the original's unit-test loss."""
    case = golden.case("unit_test_example")
    raw = torch.tensor(case["raw_labels"])
    module = S.CtcLossModule(shift_labels=True, exact=False, reduction="none")
    loss = module(torch.tensor(case["logits"]), raw, torch.tensor(case["logits_len"]),
                  torch.tensor(case["raw_len"]))
    torch.testing.assert_close(loss, torch.tensor([6.115841, 4.7813644]), **tol.LOSS)


def test_zero_infinity_and_mean():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    labels = torch.tensor([[1, 1, 2], [3, -100, -100]])  # needs 4 frames; needs 1
    loss = S.CtcLossModule(reduction="none")(logits, labels)
    assert torch.isinf(loss[0]) and torch.isfinite(loss[1])
    module = S.CtcLossModule(zero_infinity=True)
    mean = module(logits, labels)
    torch.testing.assert_close(mean, loss[1] / 1 / 2)
    mean.backward()
    assert torch.isfinite(logits.grad).all() and bool((logits.grad[0] == 0).all())


@pytest.mark.parametrize("kwargs, inputs, error, pattern", [
    (dict(blank=5), {}, ValueError, r"blank 5 is outside the vocabulary \[0, 4\]"),
    (dict(), dict(labels=torch.tensor([[1, 0, 2]])), ValueError,
     "other than the blank 0"),
    (dict(), dict(labels=torch.tensor([[1, 5, 2]])), ValueError, r"id 5 .*C=5"),
    (dict(shift_labels=True), dict(labels=torch.tensor([[1, 4, 2]])), ValueError,
     r"raw ids in \[0, 3\]"),
    (dict(), dict(labels=torch.tensor([[1, -100, 2]])), ValueError, "pad only at the end"),
    (dict(), dict(labels=torch.tensor([[1.0, 2.0, 3.0]])), TypeError, "integer"),
    (dict(), dict(logits_len=torch.tensor([7])), ValueError, "logits_len must be <="),
    (dict(), dict(labels_len=torch.tensor([4])), ValueError, "labels_len must be <="),
    (dict(), dict(logits=torch.randn(6, 5)), ValueError, r"\(B, T, C\)"),
    (dict(), dict(labels=torch.tensor([[1, 2], [3, 4]])), ValueError, "batch size 2"),
])
def test_errors(kwargs, inputs, error, pattern):
    args = dict(logits=torch.randn(1, 6, 5), labels=torch.tensor([[1, 2, 3]]))
    args.update(inputs)
    with pytest.raises(error, match=pattern):
        S.CtcLossModule(**kwargs)(**args)


def test_bad_options():
    with pytest.raises(ValueError, match="reduction must be one of"):
        S.CtcLossModule(reduction="avg")
    with pytest.raises(ValueError, match="blank must be a class id"):
        S.CtcLossModule(blank=-1)
