"""The mistakes people learning CTC make, and the faults real runs meet: each is
built here and must be caught, named, or carried as NaN, never trained on silently."""
import math
import warnings

import pytest
import torch

import seq_loss_util as S
from optional_deps import use_backend

BACKENDS = ["c-kernel", "pytorch", "triton"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    use_backend(monkeypatch, request.param)
    return request.param


def batch(seed=0, B=4, T=30, C=8, U=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, C, generator=g) * 2
    labels = torch.randint(1, C, (B, U), generator=g)
    return logits, labels


def augmented(labels, blank=0):
    raw_len = torch.full((labels.shape[0],), labels.shape[1])
    aug = S.to_blank_augmented_labels({"SEQ_DATA": labels, "SEQ_LEN": raw_len}, blank, True, False)
    return aug["SEQ_DATA"], aug["SEQ_LEN"]


# ---------------------------------------------------------------- diagnostics
def test_probabilities_are_named_with_the_fix():
    logits, labels = batch()
    with pytest.warns(UserWarning, match=r"look like probabilities .* Pass the model's logits"):
        S.CtcLossModule()(logits.softmax(-1), labels)
    aug, aug_len = augmented(labels)
    with pytest.warns(UserWarning, match="look like probabilities"):
        S.ctc_loss(aug, aug_len, logits.softmax(-1), torch.full((4,), 30))


def test_padded_frames_do_not_hide_probabilities():
    logits, labels = batch()
    probs = logits.softmax(-1)
    probs[:, 20:] = float("nan")  # garbage past the lengths
    with pytest.warns(UserWarning, match="look like probabilities"):
        S.CtcLossModule()(probs, labels, torch.full((4,), 20))


def test_an_example_of_zero_frames_does_not_hide_probabilities():
    """An example with no frames has no first frame to read: it must not vouch for the
    batch (the Triton glue reads its first frame as padding)."""
    logits, labels = batch()
    probs = logits.softmax(-1)
    frames = torch.tensor([30, 0, 30, 30])
    with pytest.warns(UserWarning, match="look like probabilities"):
        S.CtcLossModule(zero_infinity=True)(probs, labels, frames)
    probs[1, 0] = -1.0  # a negative score where no frame is valid
    with pytest.warns(UserWarning, match="look like probabilities"):
        S.CtcLossModule(zero_infinity=True)(probs, labels, frames)


def test_no_valid_frames_is_not_called_probabilities():
    labels = torch.tensor([[0, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = S.ctc_loss(labels, torch.tensor([3]), torch.full((1, 4, 2), 0.5),
                          torch.tensor([0]))  # padding that happens to sum to 1
    assert loss.tolist() == [0.0]


def test_logits_and_log_probabilities_agree_silently():
    logits, labels = batch()
    ctc = S.CtcLossModule(reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_logits = ctc(logits, labels)
        from_log_probs = ctc(logits.log_softmax(-1), labels)
    torch.testing.assert_close(from_logits, from_log_probs, atol=1e-4, rtol=1e-6)


def test_raw_labels_in_ctc_loss_are_refused():
    logits, labels = batch(U=3)
    raw_len = torch.full((4,), 3)  # odd, so the length check alone cannot tell
    with pytest.raises(ValueError, match=r"not blank-augmented: the even positions.* "
                                         r"example 0, position 2.*to_blank_augmented_labels"):
        S.ctc_loss(labels, raw_len, logits, torch.full((4,), 30))


def test_blank_at_a_label_position_is_refused():
    logits, _ = batch()
    labels = torch.tensor([[0, 3, 0, 2, 0]] * 3 + [[0, 0, 0, 2, 0]])
    with pytest.raises(ValueError, match=r"example 3, position 1 \(odd, where a label belongs\) holds the blank's id 0"):
        S.ctc_loss(labels, torch.full((4,), 5), logits, torch.full((4,), 30))


def test_time_first_logits_are_recognised():
    logits, labels = batch(B=3, T=40)
    time_first = logits.transpose(0, 1)  # (T, B, C), as torch.nn.CTCLoss takes it
    with pytest.raises(ValueError, match=r"looks time-first .* batch-first .*transpose\(0, 1\)"):
        S.CtcLossModule()(time_first, labels)
    aug, aug_len = augmented(labels)
    with pytest.raises(ValueError, match="batch-first"):
        S.ctc_loss(aug, aug_len, time_first, torch.full((3,), 40))
    with pytest.raises(ValueError, match="batch-first"):
        S.forced_align(time_first, labels)


def test_concatenated_targets_as_torch_nn_ctcloss_takes_them():
    logits, _ = batch()
    lengths = torch.tensor([3, 0, 5, 2])
    padded = torch.tensor([[1, 2, 3, -1, -1], [-1] * 5, [4, 4, 5, 6, 7], [2, 1, -1, -1, -1]])
    flat = padded[padded >= 0]  # (10,)
    ctc = S.CtcLossModule(reduction="none")
    torch.testing.assert_close(ctc(logits, flat, labels_len=lengths), ctc(logits, padded))
    native = torch.nn.functional.ctc_loss(logits.log_softmax(-1).transpose(0, 1), flat,
                                          torch.full((4,), 30), lengths, reduction="none")
    torch.testing.assert_close(ctc(logits, flat, labels_len=lengths), native, atol=1e-4,
                               rtol=1e-5)
    path = S.forced_align(logits, flat, labels_len=lengths)
    assert torch.equal(path.states, S.forced_align(logits, padded).states)
    with pytest.raises(ValueError, match="need labels_len"):
        ctc(logits, flat)
    with pytest.raises(ValueError, match="hold 10 ids, but labels_len sums to 11"):
        ctc(logits, flat, labels_len=torch.tensor([3, 1, 5, 2]))


def test_infeasible_examples_are_named():
    logits, labels = batch(T=6, U=5)
    lengths = torch.tensor([6, 4, 6, 3])  # 5 labels without repeats need 5 frames
    with pytest.warns(UserWarning, match=r"2 example\(s\) cannot be aligned.*1 \(4 frames, "
                                         r"5 labels\), 3 \(3 frames, 5 labels\)"):
        loss = S.CtcLossModule(reduction="none")(logits, labels, lengths)
    assert torch.isinf(loss[[1, 3]]).all() and torch.isfinite(loss[[0, 2]]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_infinity asks for silence
        S.CtcLossModule(zero_infinity=True)(logits, labels, lengths)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_is_zero_not_nan(reduction):
    logits = torch.zeros(0, 10, 5, requires_grad=True)
    loss = S.CtcLossModule(reduction=reduction)(logits, torch.zeros(0, 3, dtype=torch.long))
    assert not torch.isnan(loss).any() and loss.sum().item() == 0
    loss.sum().backward()
    assert logits.grad is not None and logits.grad.shape == (0, 10, 5)


# ---------------------------------------------------------------- precision
def long_batch():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 6000, 32, generator=g) * 6).half()
    labels = torch.randint(1, 32, (2, 80), generator=g)
    return logits, labels


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_float16_long_utterance_is_finite_float32(reduction):
    logits, labels = long_batch()
    native = torch.nn.functional.ctc_loss(
        logits.double().log_softmax(-1).transpose(0, 1), labels, torch.full((2,), 6000),
        torch.full((2,), 80), reduction="none")  # the float64 truth
    assert native.max() > 65504  # beyond float16's range
    want = {"none": native, "sum": native.sum(), "mean": (native / 80).mean()}[reduction]
    x = logits.clone().requires_grad_(True)
    got = S.CtcLossModule(reduction=reduction)(x, labels)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    # The loss is float32, spaced 2**-7 apart near 6.7e4: two spacings cover its
    # rounding and the recursion's (measured: at most 0.0062 on the C kernel, 0.0016
    # on the PyTorch backend; 0.07 before the shifts were summed in float64).
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2 * 2.0**-7)
    got.sum().backward()
    assert x.grad.dtype == torch.float16
    # The gradient against native's float64 one: it comes back in float16, spaced
    # 2**-11 apart just below 1 (measured: 3.7e-4 off at most, half of it rounding).
    x64 = logits.double().requires_grad_(True)
    native = torch.nn.functional.ctc_loss(
        x64.log_softmax(-1).transpose(0, 1), labels, torch.full((2,), 6000),
        torch.full((2,), 80), reduction="none")
    scale = {"none": 1.0, "sum": 1.0, "mean": 1 / 160}[reduction]
    (native_grad,) = torch.autograd.grad(native.sum() * scale, x64)
    torch.testing.assert_close(x.grad.double(), native_grad, rtol=0, atol=2.0**-11 * scale)


def test_bfloat16_autocast_returns_float32():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8)
    features = torch.randn(4, 30, 16)
    _, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(features)
        assert logits.dtype == torch.bfloat16
        loss = S.CtcLossModule()(logits, labels)
    assert loss.dtype == torch.float32
    assert torch.equal(loss, S.CtcLossModule()(logits.float(), labels))


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16])
def test_narrow_label_dtypes_do_not_overflow(dtype):
    ids = torch.tensor([[127, 3] + [1] * 68])  # U = 70: 2U + 1 = 141 > 127
    inputs = {"SEQ_DATA": ids.to(dtype), "SEQ_LEN": torch.tensor([70]).to(dtype)}
    out = S.to_blank_augmented_labels(inputs, 0)
    assert out["SEQ_DATA"].dtype == out["SEQ_LEN"].dtype == torch.int32
    assert out["SEQ_DATA"][0, :5].tolist() == [0, 128, 0, 4, 0]
    assert out["SEQ_LEN"].item() == 141
    out = S.to_blank_augmented_labels(inputs, 200)  # a blank beyond int8 too
    assert out["SEQ_DATA"][0, :3].tolist() == [200, 127, 200]


# ---------------------------------------------------------------- faults
@pytest.mark.parametrize("poison", [math.nan, math.inf])
@pytest.mark.parametrize("mode", ["original", "exact", "exact-zero-infinity"])
def test_nan_in_a_valid_frame_is_nan_for_that_example_only(backend, poison, mode):
    logits, labels = batch(T=40)
    aug, aug_len = augmented(labels)
    lengths = torch.tensor([40, 30, 40, 25])
    options = dict(exact=mode != "original", zero_infinity=mode == "exact-zero-infinity")

    def run(x):
        x = x.clone().requires_grad_(True)
        loss = S.ctc_loss(aug, aug_len, x, lengths, **options)
        loss.backward(torch.tensor([1.0, 0.5, 2.0, 1.0]))
        return loss.detach(), x.grad

    clean_loss, clean_grad = run(logits)
    bad = logits.clone()
    bad[1, 7, 3] = poison
    loss, grad = run(bad)
    assert torch.isnan(loss[1]) and torch.isnan(grad[1, :30]).all()
    assert (grad[1, 30:] == 0).all()  # padded frames stay 0
    others = [0, 2, 3]
    assert torch.equal(loss[others], clean_loss[others])
    assert torch.equal(grad[others], clean_grad[others])


def test_minus_inf_masks_a_class(backend):
    logits, labels = batch()
    masked = logits.clone()
    masked[..., 7] = -math.inf  # a class the model may never emit
    labels = labels.clamp(max=6)
    loss = S.CtcLossModule(reduction="none")(masked, labels)
    want = torch.nn.functional.ctc_loss(masked.double().log_softmax(-1).transpose(0, 1), labels,
                                        torch.full((4,), 30), torch.full((4,), 5),
                                        reduction="none")
    torch.testing.assert_close(loss.double(), want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("pad", [-1, -100, 999])
def test_label_padding_ids_are_ignored(backend, pad):
    logits, labels = batch()
    aug, aug_len = augmented(labels)
    aug_len = torch.tensor([11, 7, 9, 3])
    padded = aug.clone()
    padded[torch.arange(11)[None, :] >= aug_len[:, None]] = pad
    clean = aug.clone()
    clean[torch.arange(11)[None, :] >= aug_len[:, None]] = 0
    for exact in (False, True):
        got = S.ctc_loss(padded, aug_len, logits, torch.full((4,), 30), exact=exact)
        want = S.ctc_loss(clean, aug_len, logits, torch.full((4,), 30), exact=exact)
        assert torch.equal(got, want)
