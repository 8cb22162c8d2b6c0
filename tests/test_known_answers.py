"""Documented rules that random data never reaches, checked with known answers on
every backend (the C kernel, the PyTorch backend, the Triton kernels).

* Viterbi ties: transitions prefer stay, then advance, then skip; at the end the last
  state wins over the one before it. Continuous random logits never tie, so these
  tests build logits whose every best path scores exactly the same.
* Empty targets under every reduction, against native CTC in float64.
* Garbage in the label padding reaches neither the loss nor the gradient.
* alignment_targets against brute force over every frame sequence.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import BACKENDS, use_backend
from parity_tests import reference

# Infeasible examples on purpose; tests/test_misuse.py tests the warning naming them.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*cannot be aligned:UserWarning"),
    # Triton's interpreter evaluates log(0) in NumPy, which warns; -inf is intended.
    pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning"),
]

LOW = -1e4  # the logit of a class a frame must not emit: a path through it never wins


# ---------------------------------------------------------------------------------------
# Viterbi ties.

def augment(target, blank):
    """The blank-augmented class of each state: blank, t0, blank, t1, ..., blank."""
    return [c for label in target for c in (blank, label)] + [blank]


def state_paths(aug, frames):
    """Every state sequence of ``frames`` frames through the CTC band of ``aug`` that
    ends in one of the two final states."""
    width = len(aug)

    def steps(s):
        yield s
        if s + 1 < width:
            yield s + 1
        if s + 2 < width and aug[s + 2] != aug[s]:
            yield s + 2

    paths = [[0], [1]] if width > 1 else [[0]]
    for _ in range(frames - 1):
        paths = [p + [n] for p in paths for n in steps(p[-1])]
    return [p for p in paths if p[-1] >= width - 2] if frames else []


def rule_path(aug, allowed):
    """The path the documented rule picks when every frame ``t`` emits each class in
    ``allowed[t]`` equally well and every other class far worse: among the paths that
    use only allowed classes (all tied), ties broken from the last frame backwards,
    the later state winning each time (stay over advance over skip, and the last
    state over the one before it). None when no such path exists."""
    tied = [p for p in state_paths(aug, len(allowed))
            if all(aug[s] in allowed[t] for t, s in enumerate(p))]
    return max(tied, key=lambda p: p[::-1]) if tied else None


def tie_logits(allowed, classes):
    """``(1, T, C)`` logits: 0 on each frame's allowed classes, LOW elsewhere. Every
    allowed class of a frame gets the same log-probability, so all paths through
    allowed classes add the same numbers in the same order: exact ties."""
    logits = torch.full((1, len(allowed), classes), LOW)
    for t, ok in enumerate(allowed):
        logits[0, t, sorted(ok)] = 0.0
    return logits


def align(logits, target, blank):
    labels = torch.tensor([target if target else [-1]])
    return S.forced_align(logits, labels, labels_len=torch.tensor([len(target)]), blank=blank,
                          strict=False)


def draw_target(data):
    """A small alphabet (C classes, any blank) and a target of up to 3 labels."""
    classes = data.draw(st.integers(2, 4), label="C")
    blank = data.draw(st.integers(0, classes - 1), label="blank")
    ids = [c for c in range(classes) if c != blank]
    return classes, blank, data.draw(st.lists(st.sampled_from(ids), max_size=3), label="target")


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_logits_follow_the_tie_rule(monkeypatch, backend):
    # Every frame sequence that collapses to "1 2" is equally likely. Going back from
    # the end: the last state (4, the final blank) wins over "2"; each frame stays in
    # its state while that is still feasible; frame 1 must skip from "1" to "2".
    use_backend(monkeypatch, backend)
    got = S.forced_align(torch.zeros(1, 6, 4), torch.tensor([[1, 2]]))
    assert got.states[0].tolist() == [1, 3, 4, 4, 4, 4]
    assert got.labels[0].tolist() == [1, 2, 0, 0, 0, 0]
    assert float(got.log_prob[0]) == pytest.approx(-6 * math.log(4), abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_label_ties(monkeypatch, backend):
    # "1 1" on uniform frames must pass through the blank between the two 1s: it can
    # never skip there. The rule keeps the last frames in the final blank and enters
    # it as late as possible only where forced: states 1, 2, 3, 4, 4.
    use_backend(monkeypatch, backend)
    got = S.forced_align(torch.zeros(1, 5, 3), torch.tensor([[1, 1]]))
    assert got.states[0].tolist() == [1, 2, 3, 4, 4]
    assert rule_path(augment([1, 1], 0), [set(range(3))] * 5) == [1, 2, 3, 4, 4]


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_hot_frames_with_a_tie_at_the_end(monkeypatch, backend):
    # Frames emit "1", "1", then blank or "2" equally (twice): "1 2" can end in "2" or
    # in the final blank. The last state wins: ... 2, blank.
    use_backend(monkeypatch, backend)
    allowed = [{1}, {1}, {0, 2}, {0, 2}]
    got = align(tie_logits(allowed, 3), [1, 2], 0)
    assert got.states[0].tolist() == [1, 1, 3, 4]
    assert rule_path(augment([1, 2], 0), allowed) == [1, 1, 3, 4]


@pytest.mark.parametrize("backend", BACKENDS)
def test_advance_beats_skip_on_a_tie(monkeypatch, backend):
    # "1 2": frame 1 may be "1" or the blank, never "2"; frame 2 must be "2". Then "2"
    # at frame 2 is reached equally by advancing from the blank or skipping from "1";
    # staying is impossible. Advance wins: 1, blank, 2 (states 1, 2, 3), not 1, 1, 2.
    use_backend(monkeypatch, backend)
    allowed = [{1}, {0, 1}, {2}]
    got = align(tie_logits(allowed, 3), [1, 2], 0)
    assert got.states[0].tolist() == [1, 2, 3]
    assert rule_path(augment([1, 2], 0), allowed) == [1, 2, 3]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_ties_equal_the_rule_on_every_backend(backend, data):
    classes, blank, target = draw_target(data)
    aug = augment(target, blank)
    frames = data.draw(st.integers(1, 7), label="T")
    # One alignment is drawn and always allowed, so a tied set exists when any path
    # does; each frame also allows a random set of other classes, which makes ties.
    paths = state_paths(aug, frames)
    allowed = [set(data.draw(st.sets(st.integers(0, classes - 1)), label=f"allowed {t}"))
               for t in range(frames)]
    if paths:
        chosen = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
        for t, s in enumerate(chosen):
            allowed[t].add(aug[s])
    allowed = [ok or {blank} for ok in allowed]
    want = rule_path(aug, allowed)
    with pytest.MonkeyPatch.context() as mp:
        use_backend(mp, backend)
        got = align(tie_logits(allowed, classes), target, blank)
    if want is None:
        assert got.states[0].tolist() == [-1] * frames and got.log_prob[0] == -math.inf
        return
    assert got.states[0].tolist() == want
    expected = sum(-math.log(len(ok)) for ok in allowed)
    assert float(got.log_prob[0]) == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------------------------------
# Empty targets under every reduction.

def native_module_loss(logits, targets, target_len, reduction):
    """torch.nn.functional.ctc_loss in float64 on batch-first logits: loss and grad."""
    x = logits.double().requires_grad_(True)
    frames = torch.full((logits.shape[0],), logits.shape[1])
    loss = torch.nn.functional.ctc_loss(x.log_softmax(-1).transpose(0, 1), targets, frames,
                                        target_len, reduction=reduction)
    loss.sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("empties", ["one", "all"])
def test_empty_targets_every_reduction(monkeypatch, backend, reduction, empties):
    use_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 9, 5, generator=g) * 2
    if empties == "one":
        targets = torch.tensor([[1, 2, 2], [0, 0, 0], [3, 0, 0]])
        target_len = torch.tensor([3, 0, 1])
    else:
        targets, target_len = torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    x = logits.clone().requires_grad_(True)
    got = S.CtcLossModule(reduction=reduction)(x, targets, labels_len=target_len)
    got.sum().backward()
    want, want_grad = native_module_loss(logits, targets, target_len, reduction)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(x.grad.double(), want_grad, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------
# Garbage label padding.

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exact", [False, True])
def test_label_padding_garbage_reaches_neither_loss_nor_gradient(monkeypatch, backend, exact):
    use_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(3, 12, 6, generator=g)
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[0, 2, 2], [4, 1, 0],
                                                                 [3, 0, 0]]),
                                       "SEQ_LEN": torch.tensor([3, 2, 1])}, 0)
    labels, labels_len = aug["SEQ_DATA"], aug["SEQ_LEN"]  # (3, 7): widths 7, 5, 3

    def loss_and_grad(labels, weights=(1.0, 0.5, 2.0)):
        x = logits.clone().requires_grad_(True)
        loss = S.ctc_loss(labels, labels_len, x, torch.tensor([12, 10, 4]), exact=exact)
        loss.backward(torch.tensor(weights))
        return loss.detach(), x.grad

    clean = loss_and_grad(labels)
    past = torch.arange(labels.shape[1])[None, :] >= labels_len[:, None]
    for fill in (-100, 10**6, -1):
        garbage = torch.where(past, fill, labels)
        got = loss_and_grad(garbage)
        assert torch.isfinite(got[1]).all(), fill
        # Every backend reads only the states below each length, in the same order.
        assert torch.equal(got[0], clean[0]) and torch.equal(got[1], clean[1]), fill
    # The batch-first module's -100 padding (Hugging Face's), through the backward too.
    x = logits.clone().requires_grad_(True)
    raw = torch.tensor([[1, 3, 3, -100], [5, 2, -100, -100], [4, -100, -100, -100]])
    loss = S.CtcLossModule(reduction="sum", exact=exact)(x, raw, torch.tensor([12, 10, 4]))
    loss.backward()
    want = loss_and_grad(labels, (1.0, 1.0, 1.0))
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad, want[1], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------
# alignment_targets against brute force.

def brute_force_targets(log_probs, target, blank):
    """``(T, C)`` probability that frame t emits class c, over every frame sequence that
    collapses to ``target``, weighted by its probability (float64)."""
    frames, classes = log_probs.shape
    totals = np.zeros((frames, classes))
    for seq in itertools.product(range(classes), repeat=frames):
        collapsed = [c for i, c in enumerate(seq) if c != blank and (i == 0 or c != seq[i - 1])]
        if collapsed == list(target):
            totals[np.arange(frames), seq] += np.exp(log_probs[np.arange(frames), seq].sum())
    return totals / totals.sum(axis=1, keepdims=True) if totals.any() else totals


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_alignment_targets_equal_brute_force(backend, data):
    classes, blank, target = draw_target(data)
    frames = data.draw(st.integers(1, 6), label="T")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    logits = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, frames, classes))
                              * 3).float()
    want = brute_force_targets(logits[0].double().log_softmax(-1).numpy(), target, blank)
    with pytest.MonkeyPatch.context() as mp:
        use_backend(mp, backend)
        got = S.alignment_targets(logits, torch.tensor([target or [-1]]),
                                  labels_len=torch.tensor([len(target)]), blank=blank)
    np.testing.assert_allclose(got[0].double().numpy(), want, atol=2e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alignment_targets_equal_the_reference_posteriors(monkeypatch, backend):
    # Longer examples than brute force reaches: softmax minus the float64 reference's
    # exact gradient (parity_tests/reference.py, written from the paper, none of the
    # port's code) is the posterior of each class per frame.
    use_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(3, 40, 7, generator=g) * 3
    raw = torch.tensor([[1, 1, 2, 6, 6, 6, 3], [4, 5, 4, -1, -1, -1, -1],
                        [2, -1, -1, -1, -1, -1, -1]])
    logits_len = torch.tensor([40, 25, 3])
    got = S.alignment_targets(logits, raw, logits_len)
    for b in range(3):
        target = [c for c in raw[b].tolist() if c >= 0]
        frames = int(logits_len[b])
        x = logits[b, :frames].double().numpy()
        ref = reference.ctc_example(np.array(augment(target, 0)), x)
        soft = torch.from_numpy(x).log_softmax(-1).exp().numpy()
        np.testing.assert_allclose(got[b, :frames].double().numpy(), soft - ref["grad"],
                                   atol=2e-5, rtol=0)
        assert bool((got[b, frames:] == 0).all())


# ---------------------------------------------------------------------------------------
# A frame that no state can emit (-inf logits: classes masked out).

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_a_frame_no_state_can_emit(monkeypatch, backend, zero_infinity):
    # Example 0's frame 4 can only be class 3, which "1 2" never uses: every state is
    # unreachable there, so the example is infeasible (its per-frame normaliser has
    # nothing to normalise). Example 1's frame 3 is surely the blank.
    use_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 8, 4, generator=g)
    logits[0, 4, :3] = -math.inf
    logits[1, 3, 1:] = -math.inf
    labels = torch.tensor([[1, 2], [3, 1], [2, -100]])
    x = logits.clone().requires_grad_(True)
    loss = S.CtcLossModule(reduction="none", zero_infinity=zero_infinity)(x, labels)
    loss.sum().backward()
    assert loss[0] == (0.0 if zero_infinity else math.inf)
    assert bool((x.grad[0] == 0).all())
    x64 = logits.double().requires_grad_(True)
    native = torch.nn.functional.ctc_loss(
        x64.log_softmax(-1).transpose(0, 1), torch.tensor([[1, 2], [3, 1], [2, 0]]),
        torch.full((3,), 8), torch.tensor([2, 2, 1]), reduction="none")
    (native_grad,) = torch.autograd.grad(native[1:].sum(), x64)
    torch.testing.assert_close(loss[1:].double(), native[1:], atol=1e-4, rtol=1e-5)
    # Native's gradient is NaN around -inf logits (its -inf arithmetic); the true one
    # is 0 on a class that cannot be emitted and softmax - posterior = 1 - 1 on the sure
    # blank, which is what ours gives.
    sure = torch.isfinite(native_grad[1:])
    torch.testing.assert_close(x.grad[1:].double()[sure], native_grad[1:][sure], atol=1e-5,
                               rtol=0)
    assert bool((x.grad[1:][~sure].abs() <= 1e-6).all())
    # The original's mode: minus the larger final state, -inf here: inf, never NaN.
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[0, 1], [2, 0], [1, 0]]),
                                       "SEQ_LEN": torch.tensor([2, 2, 1])}, 0)
    original = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.full((3,), 8))
    assert original[0] == math.inf and bool(torch.isfinite(original[1:]).all())
    aligned = S.forced_align(logits, labels, strict=False)
    assert aligned.log_prob[0] == -math.inf and bool((aligned.states[0] == -1).all())
    assert bool(torch.isfinite(aligned.log_prob[1:]).all())
