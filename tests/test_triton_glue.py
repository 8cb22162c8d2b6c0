"""The Triton glue kernels (``_seq_loss_kernels/triton_wrapper.py``): CtcLossModule's
label preparation and checks, the log-softmax, the loss epilogue and the backward's
set-up, against the general path's ATen ops (the PyTorch backend), under Triton's
interpreter on CPU (or on a GPU)."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import need_triton, triton_module_marks, use_backend

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = triton_module_marks(DEVICE)


@pytest.fixture(scope="module")
def glue():
    """The triton_wrapper module, with its prepare step's calls counted in
    ``glue.prepared`` (cleared by each test that reads it)."""
    need_triton()
    from _seq_loss_kernels import triton_ctc, triton_wrapper

    calls = []
    original = triton_wrapper.prepare_batch_first

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(triton_ctc.TritonBackend, "prepare_batch_first", staticmethod(counted))
        mp.setattr(triton_wrapper, "prepared", calls, raising=False)
        yield triton_wrapper


def run(backend, module, logits, *args, weights=None):
    """(loss, grad) of ``module`` on ``backend``."""
    with pytest.MonkeyPatch.context() as mp:
        use_backend(mp, backend, DEVICE)
        x = logits.detach().clone().requires_grad_()
        loss = module(x, *args)
        loss.backward(weights if weights is not None and loss.dim() else None)
        return loss.detach(), x.grad


def general_and_fused(glue, module, *args, weights):
    """``(loss, grad)`` of ``module`` on the general path (PyTorch backend), then on the
    fused Triton path, which must have prepared the batch once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "_warn", lambda message: None)  # infeasible ones warn on both paths
        want = run("pytorch", module, *args, weights=weights)
        glue.prepared.clear()
        got = run("triton", module, *args, weights=weights)
    assert glue.prepared == [1]
    return want, got


def test_verdict_passes_only_clean_inputs(glue):
    ok = glue.NOT_PROBABILITIES
    assert glue.verdict_passes(ok, True) and glue.verdict_passes(ok | glue.INFEASIBLE, False)
    assert not glue.verdict_passes(ok | glue.INFEASIBLE, True)  # the loss warns of these
    assert not glue.verdict_passes(0, False)  # the probabilities test needs every frame
    for fault in (glue.GAP, glue.LABELS_LEN, glue.LOGITS_LEN, glue.BAD_ID):
        assert not glue.verdict_passes(ok | fault, False)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 4), classes=st.integers(2, 9),
       width=st.integers(0, 6), blank=st.integers(0, 8), shift=st.booleans(),
       by_length=st.booleans(), frames_given=st.booleans(), exact=st.booleans(),
       zero_infinity=st.booleans(), reduction=st.sampled_from(["mean", "sum", "none"]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_module_equals_the_general_path(glue, seed, batch, classes, width, blank, shift,
                                        by_length, frames_given, exact, zero_infinity,
                                        reduction, dtype):
    blank = blank % classes
    g = torch.Generator().manual_seed(seed)
    frames = 3 * width + 4
    logits = (torch.randn(batch, frames, classes, generator=g) * 3).to(dtype)
    # Labels that are valid for the convention: class ids other than the blank, or raw
    # ids below C - 1 that the module shifts past it.
    if shift:
        labels = torch.randint(0, classes - 1, (batch, width), generator=g)
    else:
        others = torch.tensor([c for c in range(classes) if c != blank])
        labels = others[torch.randint(0, len(others), (batch, width), generator=g)]
    lengths = torch.randint(0, width + 1, (batch,), generator=g)
    if by_length:
        labels = torch.where(torch.arange(width) < lengths[:, None], labels, 99)
        labels_len = lengths
    else:
        labels = torch.where(torch.arange(width) < lengths[:, None], labels, -100)
        labels_len = None
    # Some examples short enough to be infeasible.
    logits_len = torch.randint(0, frames + 1, (batch,), generator=g) if frames_given else None
    module = S.CtcLossModule(blank=blank, shift_labels=shift, reduction=reduction,
                             exact=exact, zero_infinity=zero_infinity)
    weights = torch.rand(batch, generator=g)
    want, got = general_and_fused(glue, module, logits, labels, logits_len, labels_len,
                                  weights=weights)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5, equal_nan=True)
    torch.testing.assert_close(got[1].float(), want[1].float(), rtol=1e-5,
                               atol=1e-5 if dtype == torch.float32 else 1e-2, equal_nan=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("exact,zero_infinity", [(True, True), (True, False), (False, True)])
def test_infeasible_examples_on_the_fused_path(glue, reduction, exact, zero_infinity):
    """The combination the random test above draws only now and then (a fault in the
    epilogue's zero_infinity branch was caught only when it did): exact, zero_infinity
    and examples with too few frames, written out. Infeasible ones count 0 with
    zero_infinity (inf without it, in exact mode) and get no gradient."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 10, 6, generator=g) * 2
    labels = torch.tensor([[1, 2, 3], [4, 4, -100], [2, 5, 1]])
    logits_len = torch.tensor([10, 2, 2])  # 4 4 needs 3 frames, 2 5 1 needs 3
    module = S.CtcLossModule(reduction=reduction, exact=exact, zero_infinity=zero_infinity)
    weights = torch.tensor([1.0, 0.5, 2.0])
    want, got = general_and_fused(glue, module, logits, labels, logits_len, None,
                                  weights=weights)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5, equal_nan=True)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5, equal_nan=True)
    assert not got[1][1:].any()  # no gradient for the infeasible examples
    if reduction == "none":
        infeasible = 0.0 if zero_infinity or not exact else math.inf
        assert got[0][1:].tolist() == [infeasible, infeasible]
        assert math.isfinite(got[0][0]) and got[0][0] > 0


def faulty(kind):
    """Inputs with one fault each, and what the general path says about them."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 12, 6, generator=g)
    labels = torch.tensor([[1, 2, 3], [4, 5, -100], [2, 2, 1]])
    frames, labels_len = None, None
    if kind == "gap":
        labels[1] = torch.tensor([4, -100, 5])
    elif kind == "blank as a label":
        labels[2, 1] = 0
    elif kind == "id past C":
        labels[0, 2] = 6
    elif kind == "labels_len past U":
        labels_len = torch.tensor([3, 2, 4])
    elif kind == "negative labels_len":
        labels_len = torch.tensor([3, -1, 3])
    elif kind == "logits_len past T":
        frames = torch.tensor([12, 13, 12])
    elif kind == "negative logits_len":
        frames = torch.tensor([12, 12, -2])
    elif kind == "probabilities":
        logits = logits.softmax(-1)
    elif kind == "infeasible":
        frames = torch.tensor([12, 12, 3])  # 2 2 1 needs 4 frames
    return logits, labels, frames, labels_len


FAULTS = ["gap", "blank as a label", "id past C", "labels_len past U", "negative labels_len",
          "logits_len past T", "negative logits_len", "probabilities", "infeasible"]


def outcome(backend, kind):
    """The exception or warnings the module gives on ``backend``, and its loss."""
    logits, labels, frames, labels_len = faulty(kind)
    with pytest.MonkeyPatch.context() as mp:
        use_backend(mp, backend, DEVICE)
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                loss = S.CtcLossModule(reduction="none")(logits, labels, frames, labels_len)
            except (ValueError, TypeError) as e:
                return type(e), str(e), None
    return None, [str(w.message) for w in caught if w.category is UserWarning], loss


@pytest.mark.parametrize("kind", FAULTS)
def test_a_fault_gets_the_general_paths_message(glue, kind):
    glue.prepared.clear()
    want, got = outcome("pytorch", kind), outcome("triton", kind)
    assert got[:2] == want[:2]
    assert want[0] is not None or want[1], "the fault must be named"
    if want[2] is not None:
        torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-5)
    assert glue.prepared  # the fused check ran, found the fault, and handed over


def test_log_softmax_kernel(glue):
    g = torch.Generator().manual_seed(2)
    classes = 1500  # two passes of 1024 classes
    x = torch.randn(3, classes, 5, generator=g).transpose(1, 2)  # (3, 5, C), strided
    x[0, 1, 7] = -math.inf  # a masked class: fine
    x[0, 2] = -math.inf  # a frame of -inf only: NaN, as torch's
    x[1, 0, 1400] = math.nan
    x[1, 3, 3] = math.inf
    x[2, 4, 0] = math.nan  # in a padded frame: not bad
    frames = torch.tensor([5, 5, 4])
    log_probs, bad = glue.log_softmax(x, frames)
    want = torch.log_softmax(x, dim=2)
    ok = torch.ones(3, 5, dtype=torch.bool)
    ok[0, 2] = ok[1, 0] = ok[1, 3] = ok[2, 4] = False
    torch.testing.assert_close(log_probs[ok], want[ok], rtol=0, atol=2e-6)
    assert torch.isnan(log_probs[0, 2]).all() and torch.isnan(log_probs[1, 0]).all()
    expected = torch.zeros(3, 5, dtype=torch.bool)
    expected[0, 2] = expected[1, 0] = expected[1, 3] = True
    assert torch.equal(bad, expected)
    half, _ = glue.log_softmax(x.to(torch.bfloat16), frames)
    torch.testing.assert_close(half[ok], torch.log_softmax(x.to(torch.bfloat16).float(), 2)[ok],
                               rtol=0, atol=2e-6)


def test_backward_prologue_sorts_states_stably_and_scales(glue):
    labels = torch.tensor([[0, 3, 0, 1, 0, 3, 0], [0, 2, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]])
    labels_len = torch.tensor([7, 3, 1])
    counted = torch.tensor([True, False, True])
    poisoned = torch.tensor([False, False, True])
    grad_loss = torch.tensor(0.5).expand(3)  # a mean's gradient: stride 0
    scale, order, sorted_labels = glue.backward_prologue(grad_loss, counted, poisoned, labels,
                                                         labels_len, 4, 16)
    keys = torch.where(torch.arange(7) < labels_len[:, None], labels, 4)
    want_labels, want_order = torch.sort(keys, dim=1, stable=True)
    # Sorted position k is stored at (k % ROWS) * (16 // ROWS) + k // ROWS: the gradient
    # kernel's tile, ROWS consecutive positions a thread.
    rows = glue.GRAD_ROWS
    k = torch.arange(16)
    at = (k % rows) * (16 // rows) + k // rows
    assert order.shape == sorted_labels.shape == (3, 16)
    assert torch.equal(order[:, at][:, :7], want_order)
    assert torch.equal(sorted_labels[:, at][:, :7], want_labels)
    assert (sorted_labels[:, at][:, 7:] == 5).all()  # lanes past L sort after the padding
    assert scale[0] == 0.5 and scale[1] == 0 and math.isnan(scale[2])
    zero = glue.backward_prologue(torch.zeros(3), counted, poisoned, labels, labels_len, 4, 16)
    assert torch.equal(zero[0], torch.zeros(3))  # no gradient asked: no NaN either
