"""torchaudio_compat: torchaudio's forced_align and merge_tokens, batched, against this
package's forced_align and alignment_segments on every example, torchaudio's documented
shapes and semantics, and the emissions MMS feeds it (a <star> column of zeros)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from torchaudio_compat import TokenSpan, forced_align, merge_tokens


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 4), frames=st.integers(4, 30),
       classes=st.integers(3, 7), blank=st.integers(0, 2))
def test_every_example_equals_forced_align_and_alignment_segments(seed, batch, frames,
                                                                  classes, blank):
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(batch, frames, classes, generator=g,
                            dtype=torch.float64).log_softmax(-1)
    ids = [c for c in range(classes) if c != blank]
    width = min(3, frames // 2)
    targets = torch.tensor(ids, dtype=torch.int32)[
        torch.randint(len(ids), (batch, width), generator=g)]
    target_lengths = torch.randint(1, width + 1, (batch,), generator=g)
    input_lengths = torch.randint(2 * width, frames + 1, (batch,), generator=g)
    alignments, scores = forced_align(log_probs, targets, input_lengths, target_lengths,
                                      blank=blank)
    assert alignments.shape == scores.shape == (batch, frames)
    ours = S.forced_align(log_probs, targets, input_lengths, target_lengths, blank=blank)
    for b in range(batch):
        n = int(input_lengths[b])
        assert alignments[b, :n].tolist() == ours.labels[b, :n].tolist()
        assert alignments[b, n:].tolist() == [blank] * (frames - n)
        torch.testing.assert_close(scores[b, :n], log_probs[b, :n].gather(
            1, alignments[b, :n, None].long())[:, 0])
        assert float(scores[b, n:].abs().sum()) == 0.0
        spans = merge_tokens(alignments[b], scores[b], blank=blank)
        assert [(s.token, s.start, s.end) for s in spans] == [
            tuple(x) for x in S.alignment_segments(ours, b)]
        for span in spans:
            assert span.score == pytest.approx(float(scores[b, span.start:span.end].mean()))
            assert len(span) == span.end - span.start
        alone = forced_align(log_probs[b:b + 1, :n], targets[b:b + 1, :int(target_lengths[b])],
                             blank=blank)
        assert alone[0][0].tolist() == alignments[b, :n].tolist()
    assert merge_tokens(alignments, scores, blank=blank)[0] == merge_tokens(
        alignments[0], scores[0], blank=blank)


def test_the_tutorials_shapes_and_mms_star_column():
    """torchaudio's tutorial: an emission (1, 169, 29), a transcript, a path and its
    scores (1, 169) each, one span per token. MMS appends a <star> column of zeros to
    the log-probabilities: used as given, the star takes the frames the transcript
    leaves (here the first 40), each scoring exactly 0."""
    g = torch.Generator().manual_seed(0)
    transcript = torch.randint(1, 29, (1, 40), generator=g)
    frames = torch.zeros(169, dtype=torch.long)  # the blank, but for the planted labels
    frames[40 + 3 * torch.arange(40)] = transcript[0]
    emission = (torch.randn(169, 29, generator=g) + 10.0 * torch.nn.functional.one_hot(
        frames, 29)).log_softmax(-1)[None]
    noise = torch.randint(1, 29, (40,), generator=g)
    emission[0, :40] = (torch.randn(40, 29, generator=g) + 10.0 * torch.nn.functional.one_hot(
        noise, 29)).log_softmax(-1)
    aligned, scores = forced_align(emission, transcript.int(), blank=0)
    assert aligned.shape == scores.shape == (1, 169)
    spans = merge_tokens(aligned[0], scores[0])
    assert [s.token for s in spans] == transcript[0].tolist()
    assert all(isinstance(s, TokenSpan) for s in spans)
    star = torch.cat([emission, torch.zeros(1, 169, 1)], dim=2)  # class 29, log-score 0
    with_star = torch.cat([torch.tensor([[29]]), transcript], dim=1)
    aligned, scores = forced_align(star, with_star)
    spans = merge_tokens(aligned[0], scores[0])
    assert (spans[0].token, spans[0].start, spans[0].end, spans[0].score) == (29, 0, 40, 0.0)
    assert [(s.token, s.start) for s in spans[1:]] == [
        (int(t), 40 + 3 * i) for i, t in enumerate(transcript[0])]


def test_compat_errors():
    log_probs = torch.randn(2, 5, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="example 1 cannot be aligned: 4 frames for 3 labels "
                                         "with 2 adjacent repeats .needs at least 5 frames.$"):
        forced_align(log_probs, torch.tensor([[1, 2, 3], [1, 1, 1]]), torch.tensor([5, 4]))
    with pytest.raises(ValueError, match="other than the blank 0"):
        forced_align(log_probs, torch.tensor([[1, 0], [1, 2]]))
    with pytest.raises(ValueError, match=r"log_probs must be a tensor \(B, T, C\)"):
        forced_align(log_probs[0], torch.tensor([[1]]))
    with pytest.raises(ValueError, match="one shape"):
        merge_tokens(torch.zeros(5), torch.zeros(4))
    assert merge_tokens(torch.zeros(0, dtype=torch.long), torch.zeros(0)) == []
