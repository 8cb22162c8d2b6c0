"""The wildcard: a transcript token that takes any run of frames (none included) at a
per-frame score the user sets, in forced_align, alignment_targets and CtcLossModule.
Held to brute force over every path, gradcheck, and a planted alignment."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from optional_deps import BACKENDS, use_backend

STAR = 4  # the wildcard's id for logits of C = 4 classes (blank 0)


def brute_force(log_probs, transcript, score):
    """(best path's log-score, log-sum over paths) by enumerating every state sequence
    of the transcript's graph: gaps around the labels; a label takes one frame or more, a
    gap none or more, except between two equal labels, where the gap takes one or more.
    A gap's frame is the blank, or in a wildcard's gap the blank or the wildcard (best:
    the larger; summed: both)."""
    labels = [t for t in transcript if t != STAR]
    gaps = [False] * (len(labels) + 1)
    seen = 0
    for t in transcript:
        if t == STAR:
            gaps[seen] = True
        else:
            seen += 1
    states = []  # (kind, class): ("gap", wildcard?) or ("label", id)
    for k, label in enumerate(labels):
        states += [("gap", gaps[k]), ("label", label)]
    states.append(("gap", gaps[-1]))
    frames, count = log_probs.shape[0], len(states)
    best, paths = -math.inf, []
    for path in itertools.product(range(count), repeat=frames):
        if path[0] > 1 or path[-1] < count - 2:
            continue
        ok = True
        for a, b in itertools.pairwise(path):
            step = b - a
            if step not in (0, 1, 2) or (step == 2 and (
                    states[b][0] != "label" or states[b][1] == states[a][1])):
                ok = False
                break
        if not ok:
            continue
        total = summed = 0.0
        for t, s in enumerate(path):
            kind, value = states[s]
            if kind == "label":
                best_t = sum_t = float(log_probs[t, value])
            elif value:  # a wildcard's gap: the frame is the blank or the wildcard
                blank = float(log_probs[t, 0])
                best_t, sum_t = max(blank, score), float(np.logaddexp(blank, score))
            else:
                best_t = sum_t = float(log_probs[t, 0])
            total += best_t
            summed += sum_t
        best = max(best, total)
        paths.append(summed)
    return best, (torch.tensor(paths, dtype=torch.float64).logsumexp(0).item()
                  if paths else -math.inf)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), frames=st.integers(1, 6),
       transcript=st.lists(st.sampled_from([1, 2, 3, STAR]), min_size=1, max_size=4),
       score=st.sampled_from([0.0, -1.5, 0.7]))
def test_wildcards_equal_brute_force(backend, seed, frames, transcript, score):
    with pytest.MonkeyPatch.context() as patch:
        use_backend(patch, backend)
        # The Triton kernels compute in float32 (float64 goes to the PyTorch backend).
        check_against_brute_force(seed, frames, transcript, score,
                                  torch.float32 if backend == "triton" else torch.float64)


def check_against_brute_force(seed, frames, transcript, score, dtype):
    if sum(t != STAR for t in transcript) > 2:  # keeps the states at 5 or fewer
        transcript = [t for t in transcript if t == STAR] + [1, 2]
    g = torch.Generator().manual_seed(seed)
    logits = (2.0 * torch.randn(1, frames, 4, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.tensor([transcript])
    best, total = brute_force(torch.log_softmax(logits[0].double(), 1), transcript, score)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    found = S.forced_align(logits, labels, blank=0, strict=False, wildcard=STAR,
                           wildcard_score=score)
    loss = S.CtcLossModule(reduction="none", wildcard=STAR, wildcard_score=score,
                           zero_infinity=False)
    if best == -math.inf:
        assert found.log_prob[0] == -math.inf
        with pytest.warns(UserWarning, match="cannot be aligned"):
            assert loss(logits, labels)[0] == math.inf
        return
    assert found.log_prob[0].item() == pytest.approx(best, abs=tol)
    assert loss(logits, labels)[0].item() == pytest.approx(-total, abs=tol)
    # The path's frames: the wildcard's are labelled with its id, on even states.
    star = found.labels[0] == STAR
    assert bool((found.states[0][star] % 2 == 0).all())


def test_gradient_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[STAR, 1, 2, STAR], [1, STAR, 1, -1]])
    for score in (0.0, -2.0):
        module = S.CtcLossModule(wildcard=STAR, wildcard_score=score)
        assert torch.autograd.gradcheck(lambda x, m=module: m(x, labels), (logits,))


def test_targets_sum_to_one_and_give_the_gradient():
    """Soft targets with a wildcard: rows sum to 1, and cross-entropy against them has
    the loss's gradient; a frame the wildcard surely takes targets the model itself."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 9, 4, generator=g, dtype=torch.float64)
    logits[:, :3, 3] += 8.0  # three frames the transcript cannot explain: "3" is not in it
    labels = torch.tensor([[STAR, 1, 2], [STAR, 2, 1]])
    targets = S.alignment_targets(logits, labels, wildcard=STAR)
    torch.testing.assert_close(targets.sum(2), torch.ones(2, 9, dtype=torch.float64))
    x = logits.clone().requires_grad_(True)
    S.CtcLossModule(reduction="sum", wildcard=STAR)(x, labels).backward()
    y = logits.clone().requires_grad_(True)
    (-(targets * torch.log_softmax(y, 2))).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(targets[:, 0], torch.softmax(logits[:, 0], 1), atol=1e-3,
                               rtol=0)


def planted(junk_before, junk_after, word=(1, 2, 3, 1), per=3):
    """Logits where ``junk_before`` frames of confident noise (classes 2 and 3 at
    random: speech the transcript lacks, unlike the word's first and last label), then
    ``word`` (each label ``per`` frames, a blank after each), then ``junk_after``."""
    g = torch.Generator().manual_seed(7)
    frames = []
    for _ in range(junk_before):
        frames.append(int(torch.randint(2, 4, (1,), generator=g)))
    truth = []
    for label in word:
        truth.append((label, len(frames), len(frames) + per))
        frames += [label] * per + [0]
    for _ in range(junk_after):
        frames.append(int(torch.randint(2, 4, (1,), generator=g)))
    logits = torch.full((1, len(frames), 4), -4.0)
    logits[0, torch.arange(len(frames)), torch.tensor(frames)] = 4.0
    return logits, truth


def test_untranscribed_stretches_go_to_the_wildcard():
    """Noise before and after a word: with wildcards around it, each label's span is
    the planted one and no noise frame is given to a label; without them, the labels
    stretch over the noise."""
    logits, truth = planted(12, 9)
    word = [label for label, _, _ in truth]
    found = S.forced_align(logits, torch.tensor([[STAR, *word, STAR]]), wildcard=STAR,
                           wildcard_score=-5.0)
    spans = [(s.label, s.start, s.end) for s in S.alignment_segments(found)]
    assert spans == truth
    assert bool((found.labels[0, :12] == STAR).all()) and bool((found.labels[0, -9:] == STAR).all())
    plain = S.forced_align(logits, torch.tensor([word]))
    assert [(s.label, s.start, s.end) for s in S.alignment_segments(plain)] != truth
    # MMS's score of 0 outbids the labels' own frames next to it: one frame each there.
    mms = S.alignment_segments(S.forced_align(logits, torch.tensor([[STAR, *word, STAR]]),
                                              wildcard=STAR))
    assert mms[0].end - mms[0].start == 1 and mms[-1].end - mms[-1].start == 1


def test_a_wildcard_between_equal_labels_separates_them():
    """"1 * 1": the wildcard takes at least the frame between the two 1s (a blank would
    have to), and a path with no frame between them does not exist."""
    logits = torch.full((1, 2, 4), -4.0)
    logits[0, :, 1] = 4.0
    found = S.forced_align(logits, torch.tensor([[1, STAR, 1]]), wildcard=STAR, strict=False)
    assert found.log_prob[0] == -math.inf
    logits = torch.full((1, 3, 4), -4.0)
    logits[0, [0, 2], 1] = 4.0
    found = S.forced_align(logits, torch.tensor([[1, STAR, 1]]), wildcard=STAR)
    assert found.labels[0].tolist() == [1, STAR, 1]


def test_wildcard_errors():
    logits = torch.zeros(1, 5, 4)
    labels = torch.tensor([[STAR, 1]])
    with pytest.raises(ValueError, match="wildcard id 3 cannot mark a wildcard: it collides "
                                         "with a real class of logits with C=4 classes"):
        S.forced_align(logits, labels, wildcard=3)
    with pytest.raises(ValueError, match="a negative id is padding"):
        S.CtcLossModule(wildcard=-1)
    with pytest.raises(TypeError, match="wildcard must be an int"):
        S.alignment_targets(logits, labels, wildcard=4.0)
    with pytest.raises(ValueError, match="wildcard_score must be a finite number"):
        S.CtcLossModule(wildcard=STAR, wildcard_score=math.inf)
    with pytest.raises(ValueError, match="a wildcard needs exact=True"):
        S.CtcLossModule(wildcard=STAR, exact=False)
    with pytest.raises(ValueError, match="labels holds id 5 .* or the wildcard 4"):
        S.forced_align(logits, torch.tensor([[5, 1]]), wildcard=STAR)
    with pytest.raises(ValueError, match="cannot be aligned"):
        S.forced_align(logits[:, :1], torch.tensor([[1, STAR, 2]]), wildcard=STAR)


def test_a_wildcard_never_lowers_the_best_path():
    """"a _ _ b" with a wildcard between a and b: its gap's frames stay blank where the
    blank scores more than wildcard_score, so the path and its score are those without
    the wildcard (a wildcard that replaced the blank once cost 10 here)."""
    x = torch.full((1, 4, 3), -10.0)
    x[0, 0, 1] = x[0, 1, 0] = x[0, 2, 0] = x[0, 3, 2] = 10.0
    plain = S.forced_align(x, torch.tensor([[1, 2]]))
    found = S.forced_align(x, torch.tensor([[1, 3, 2]]), wildcard=3, wildcard_score=-5.0)
    assert found.labels[0].tolist() == plain.labels[0].tolist() == [1, 0, 0, 2]
    assert found.log_prob.item() == pytest.approx(plain.log_prob.item(), abs=1e-6)


def test_padded_frames_and_empty_batches_with_a_wildcard():
    """-inf padding past an example's length (a mask) once made the wildcard's column
    NaN there and the gradient NaN; it is 0 now. An empty batch gives what it gives
    without a wildcard."""
    x = torch.randn(2, 5, 4)
    x[0, 3:] = -math.inf
    x.requires_grad_(True)
    labels = torch.tensor([[1, STAR], [1, 2]])
    loss = S.CtcLossModule(wildcard=STAR, reduction="none")(x, labels, torch.tensor([3, 5]))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert float(grad[0, 3:].abs().sum()) == 0.0
    empty = torch.randn(0, 4, 4, requires_grad=True)
    out = S.CtcLossModule(wildcard=STAR)(empty, torch.zeros(0, 2, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()
    assert S.alignment_targets(empty.detach(), torch.zeros(0, 2, dtype=torch.long),
                               wildcard=STAR).shape == (0, 4, 4)
