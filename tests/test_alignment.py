"""Forced alignment against brute force, batched against one at a time, and the
alignment targets against the exact CTC gradient. Both backends where both exist."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import use_backend
from parity_tests import reference

# These tests build infeasible examples on purpose; the warning that names them is
# tested in tests/test_misuse.py.
pytestmark = pytest.mark.filterwarnings("ignore:.*cannot be aligned:UserWarning")

BACKENDS = ["c-kernel", "pytorch"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    use_backend(monkeypatch, request.param)
    return request.param


def brute_force(log_probs, target, blank):
    """Best score over every frame-level class sequence that collapses to ``target``."""
    frames, classes = log_probs.shape
    seqs = np.stack(np.meshgrid(*[np.arange(classes)] * frames, indexing="ij"),
                    -1).reshape(-1, frames)  # (C^T, T)
    new = np.concatenate([np.ones((len(seqs), 1), bool), seqs[:, 1:] != seqs[:, :-1]], 1)
    keep = new & (seqs != blank)  # collapse: drop repeats, then blanks
    valid = keep.sum(1) == len(target)
    if len(target):
        k = np.clip(np.cumsum(keep, 1) - 1, 0, len(target) - 1)
        valid &= np.where(keep, seqs == np.asarray(target)[k], True).all(1)
    if not valid.any():
        return -np.inf
    scores = log_probs[np.arange(frames), seqs].sum(1)
    return scores[valid].max()


def collapse(frame_labels, blank):
    out, prev = [], None
    for c in frame_labels:
        if c != prev and c != blank:
            out.append(c)
        prev = c
    return out


@pytest.mark.parametrize("kernel", BACKENDS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_equals_brute_force(kernel, data):
    with pytest.MonkeyPatch.context() as mp:
        use_backend(mp, kernel)
        check_against_brute_force(data)


def check_against_brute_force(data):
    classes = data.draw(st.integers(2, 4), label="C")
    blank = data.draw(st.integers(0, classes - 1), label="blank")
    frames = data.draw(st.integers(1, 8), label="T")
    ids = [c for c in range(classes) if c != blank]
    target = data.draw(st.lists(st.sampled_from(ids), max_size=3), label="labels")
    seed = data.draw(st.integers(0, 2**31), label="seed")
    logits = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, frames, classes))
                              * 2)
    labels = torch.tensor([target + [-1] * (3 - len(target))])
    log_probs = logits[0].log_softmax(-1).numpy()
    want = brute_force(log_probs, target, blank)
    got = S.forced_align(logits, labels, blank=blank, strict=False)
    if not np.isfinite(want):
        assert got.log_prob[0] == -np.inf and bool((got.states == -1).all())
        with pytest.raises(ValueError, match="example 0 cannot be aligned"):
            S.forced_align(logits, labels, blank=blank)
        return
    assert abs(float(got.log_prob[0]) - want) < 1e-9
    path = got.labels[0].tolist()
    assert collapse(path, blank) == target
    assert abs(log_probs[np.arange(frames), path].sum() - want) < 1e-9
    exact = S.CtcLossModule(blank=blank, reduction="none")(logits, labels)
    assert float(got.log_prob[0]) <= -float(exact[0]) + 1e-12


def test_batched_equals_one_at_a_time(backend):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 40, 9, generator=g) * 3
    labels = torch.randint(1, 9, (6, 12), generator=g)
    labels_len = torch.tensor([12, 0, 5, 9, 1, 7])
    logits_len = torch.tensor([40, 3, 25, 30, 1, 17])
    batched = S.forced_align(logits, labels, logits_len, labels_len, blank=0)
    for b in range(6):
        one = S.forced_align(logits[b:b + 1, : logits_len[b]], labels[b:b + 1, : labels_len[b]],
                             blank=0)
        frames = int(logits_len[b])
        assert torch.equal(batched.states[b, :frames], one.states[0])
        assert torch.equal(batched.labels[b, :frames], one.labels[0])
        assert bool((batched.states[b, frames:] == -1).all())
        torch.testing.assert_close(batched.log_prob[b], one.log_prob[0])


def test_backends_agree():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 300, 20, generator=g) * 4
    labels = torch.randint(1, 4, (4, 60), generator=g)  # a small alphabet: many repeats
    logits_len = torch.tensor([300, 250, 280, 200])
    mp = pytest.MonkeyPatch()
    try:
        use_backend(mp, "c-kernel")
        kernel = S.forced_align(logits, labels, logits_len, blank=0, strict=False)
        use_backend(mp, "pytorch")
        torch_ = S.forced_align(logits, labels, logits_len, blank=0, strict=False)
    finally:
        mp.undo()
    torch.testing.assert_close(kernel.log_prob, torch_.log_prob)
    assert torch.equal(kernel.states, torch_.states)


def test_infeasible_example_is_named(backend):
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[1, 2], [3, 3]])  # the second needs 3 frames
    with pytest.raises(ValueError, match="example 1 cannot be aligned: 2 frames for 2 labels "
                                         "with 1 adjacent repeats"):
        S.forced_align(logits, labels, torch.tensor([4, 2]))
    got = S.forced_align(logits, labels, torch.tensor([4, 2]), strict=False)
    assert torch.isfinite(got.log_prob[0]) and got.log_prob[1] == -np.inf
    assert bool((got.labels[1] == -1).all() and (got.states[1] == -1).all())


def test_empty_label_with_no_frames_aligns(backend):
    """No frames and no labels: the empty alignment, probability 1, even in a batch
    with other examples (this used to be rejected as infeasible)."""
    logits = torch.randn(3, 5, 4)
    got = S.forced_align(logits, torch.tensor([[1, 2], [-1, -1], [3, -1]]),
                         torch.tensor([5, 0, 0]), strict=False)
    assert torch.isfinite(got.log_prob[0]) and got.log_prob[1] == 0
    assert got.log_prob[2] == -np.inf  # one label, no frames
    assert bool((got.states[1:] == -1).all())
    with pytest.raises(ValueError, match="example 2 cannot be aligned"):
        S.forced_align(logits, torch.tensor([[1, 2], [-1, -1], [3, -1]]), torch.tensor([5, 0, 0]))
    assert S.forced_align(logits[1:2, :0], torch.tensor([[-1]])).log_prob.tolist() == [0.0]


def test_segments():
    # Frames 0-9: blank, "a"x3, blank, "b"x2, blank, blank, "b" -> a, b, b.
    frames = [0, 1, 1, 1, 0, 2, 2, 0, 0, 2]
    logits = torch.nn.functional.one_hot(torch.tensor([frames]), 3).float() * 20
    got = S.forced_align(logits, torch.tensor([[1, 2, 2]]))
    assert got.labels[0].tolist() == frames
    assert S.alignment_segments(got) == [S.Segment(1, 1, 4), S.Segment(2, 5, 7),
                                         S.Segment(2, 9, 10)]


def test_segments_of_every_example_in_a_batch(backend):
    """alignment_segments(alignment, example) reads that example's row: three examples
    with different paths, lengths and padding, each forced onto a known path."""
    paths = [[0, 1, 1, 1, 0, 2, 2, 0, 0, 2],  # a, b, b
             [0, 3, 3, 0, 3, 1, 1, 0],  # c, c (a blank between), a; 2 padded frames
             [2, 2, 2, 3, 0, 0]]  # b, c straight after it; 4 padded frames
    logits = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(4))
    for b, path in enumerate(paths):
        logits[b, :len(path)] = torch.nn.functional.one_hot(torch.tensor(path), 4) * 20.0
    labels = torch.tensor([[1, 2, 2], [3, 3, 1], [2, 3, -1]])
    got = S.forced_align(logits, labels, torch.tensor([10, 8, 6]))
    assert got.labels[1].tolist() == paths[1] + [-1, -1]
    assert got.labels[2].tolist() == paths[2] + [-1] * 4
    assert S.alignment_segments(got, 0) == S.alignment_segments(got) == [
        S.Segment(1, 1, 4), S.Segment(2, 5, 7), S.Segment(2, 9, 10)]
    # Frames 1-2 say c, 3 a blank, 4 c again (a new segment), 5-6 a; 8-9 are padding.
    assert S.alignment_segments(got, 1) == [S.Segment(3, 1, 3), S.Segment(3, 4, 5),
                                            S.Segment(1, 5, 7)]
    # b over frames 0-2, c at 3 with no blank between (states 1 then 3).
    assert S.alignment_segments(got, 2) == [S.Segment(2, 0, 3), S.Segment(3, 3, 4)]
    assert S.alignment_segments(got, -1) == S.alignment_segments(got, 2)


def test_long_input_runs(monkeypatch):
    use_backend(monkeypatch, "c-kernel")  # 20000 frames: the PyTorch backend's loop is slow
    logits = torch.randn(1, 20000, 32)
    labels = torch.randint(1, 32, (1, 2000))
    got = S.forced_align(logits, labels)
    assert torch.isfinite(got.log_prob).all()
    assert collapse(got.labels[0].tolist(), 0) == labels[0].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_targets_are_the_posteriors(backend, dtype):
    # Judged by two yardsticks that share no code with the port: the float64 NumPy
    # reference's posteriors, and native CTC's float64 gradient (cross-entropy against
    # the targets must have the exact CTC loss's gradient).
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(5, 30, 8, generator=g) * 3).to(dtype)
    labels = torch.randint(1, 8, (5, 9), generator=g)
    labels_len = torch.tensor([9, 0, 4, 7, 3])
    logits_len = torch.tensor([30, 12, 20, 25, 2])  # the last is infeasible: 2 < 3
    logits[torch.arange(30)[None, :] >= logits_len[:, None]] = float("nan")
    targets = S.alignment_targets(logits, labels, logits_len, labels_len)
    assert not targets.requires_grad and targets.dtype == dtype
    valid = torch.arange(30)[None, :] < logits_len[:, None]
    assert bool((targets[~valid] == 0).all()) and bool((targets[4] == 0).all())
    bound = dict(atol=2e-5 if dtype == torch.float32 else 1e-10, rtol=0)

    for b in range(4):
        frames, target = int(logits_len[b]), labels[b, : labels_len[b]].tolist()
        x = logits[b, :frames].double().numpy()
        aug = [c for label in target for c in (0, label)] + [0]
        want = np.exp(x - x.max(1, keepdims=True))
        want = want / want.sum(1, keepdims=True) - reference.ctc_example(aug, x)["grad"]
        np.testing.assert_allclose(targets[b, :frames].double().numpy(), want, **bound)

        native_x = logits[b:b + 1, :frames].double().requires_grad_(True)
        nll = torch.nn.functional.ctc_loss(
            native_x.log_softmax(-1).transpose(0, 1), labels[b:b + 1, : labels_len[b]],
            torch.tensor([frames]), labels_len[b:b + 1], reduction="sum")
        (native_grad,) = torch.autograd.grad(nll, native_x)
        ce_grad = torch.softmax(native_x.detach(), -1) - targets[b:b + 1, :frames].double()
        torch.testing.assert_close(ce_grad, native_grad, **bound)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 50, 10, generator=g)
    labels = torch.randint(1, 10, (4, 8), generator=g)
    cpu = S.forced_align(logits, labels, strict=False)
    gpu = S.forced_align(logits.cuda(), labels.cuda(), strict=False)
    assert torch.equal(cpu.states, gpu.states.cpu())
    torch.testing.assert_close(cpu.log_prob, gpu.log_prob.cpu())
    torch.testing.assert_close(S.alignment_targets(logits, labels),
                               S.alignment_targets(logits.cuda(), labels.cuda()).cpu(),
                               atol=1e-5, rtol=0)
