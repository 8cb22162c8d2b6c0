"""ctc_long_align: a long recording against a transcript in segments, with wildcards
between them. The banded Viterbi against the full one (forced_align with wildcards), a
planted recording's boundaries, untranscribed stretches, chunks from a callable, the
confidence of a sentence that is not in the audio, and the errors."""
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

import seq_loss_util as S
from ctc_long_align import align_long
from optional_deps import need_c_kernel

C = 12
JUNK = 9  # segments use classes 1-8, untranscribed speech 9-11


def recording(seed, segments=12, junk=(300, 200, 250), noise=1.5):
    """Log-probabilities (T, C) of planted speech: untranscribed stretches (confident
    random letters) at the start, in the middle and at the end, and between them the
    segments, each token 1-2 frames then 0-2 blanks, 5-30 blank frames between
    segments. Returns (log_probs, segments, truth [(start, end)] of each segment's
    tokens)."""
    g = torch.Generator().manual_seed(seed)
    frames, segs, truth = [], [], []

    def stretch(n):  # letters no segment uses, so that no boundary is ambiguous
        frames.extend(torch.randint(JUNK, C, (n,), generator=g).tolist())

    stretch(junk[0])
    for k in range(segments):
        seg = torch.randint(1, JUNK, (int(torch.randint(5, 25, (1,), generator=g)),),
                            generator=g).tolist()
        start = len(frames)
        for i, token in enumerate(seg):
            if i and seg[i - 1] == token:
                frames.append(0)
            frames += [token] * int(torch.randint(1, 3, (1,), generator=g))
            end = len(frames)
            frames += [0] * int(torch.randint(0, 3, (1,), generator=g))
        truth.append((start, end))
        segs.append(seg)
        frames += [0] * int(torch.randint(5, 30, (1,), generator=g))
        if k == segments // 2:
            stretch(junk[1])
    stretch(junk[2])
    x = noise * torch.randn(len(frames), C, generator=g)
    x[torch.arange(len(frames)), torch.tensor(frames)] += 6.0
    return torch.log_softmax(x, 1), segs, truth


def full_viterbi(log_probs, segs, score):
    """The same alignment by forced_align over every state (wildcard id C)."""
    flat = [C] + [t for seg in segs for t in [*seg, C]]
    found = S.forced_align(log_probs[None].double(), torch.tensor([flat]), wildcard=C,
                           wildcard_score=score)
    return [tuple(s) for s in S.alignment_segments(found)]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31), width=st.sampled_from([8, 64, 256]),
       threads=st.sampled_from([1, 2]))
def test_the_band_finds_the_full_viterbi_on_recordings(seed, width, threads):
    """A band of 8, 64 or 256 states (of about 400), widened as it needs, gives the
    full Viterbi's path on planted recordings, the proof's pass on a thread of its own
    or after the forward pass."""
    need_c_kernel()
    log_probs, segs, _ = recording(seed, segments=6, junk=(40, 30, 20))
    got = align_long(log_probs.double(), segs, width=width, threads=threads)
    assert [t for seg in got for t in seg.tokens] == full_viterbi(log_probs, segs, -5.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), frames=st.integers(6, 30))
def test_a_band_of_every_state_is_the_full_viterbi(seed, frames):
    """Random emissions (no structure at all), a band as wide as the states: the same
    token spans as forced_align's."""
    need_c_kernel()
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(3.0 * torch.randn(frames, C, generator=g,
                                                    dtype=torch.float64), 1)
    segs = [torch.randint(1, C, (int(torch.randint(1, 3, (1,), generator=g)),),
                          generator=g).tolist() for _ in range(int(torch.randint(1, 4, (1,),
                                                                                 generator=g)))]
    try:
        want = full_viterbi(log_probs, segs, -5.0)
    except ValueError:
        with pytest.raises(ValueError, match="transcript needs at least"):
            align_long(log_probs, segs, width=10**6)
        return
    got = align_long(log_probs, segs, width=10**6)
    assert [t for seg in got for t in seg.tokens] == want


def test_planted_boundaries_stretches_and_chunks():
    """Every segment's boundaries within 2 frames of the planted ones; no frame of the
    untranscribed stretches given to a segment; the same result from 500-frame chunks
    of a callable; seconds from the frame duration."""
    need_c_kernel()
    log_probs, segs, truth = recording(1)
    got = align_long(log_probs, segs, frame_duration=0.02, width=64)
    assert [g.segment for g in got] == list(range(len(segs)))
    for seg, (start, end) in zip(got, truth, strict=True):
        assert abs(seg.start - start) <= 2 and abs(seg.end - end) <= 2, (seg, start, end)
        assert seg.start_s == pytest.approx(seg.start * 0.02)
        assert [t for t, _, _ in seg.tokens] == segs[seg.segment]
    assert got[0].start >= 300 and got[-1].end <= log_probs.shape[0] - 250
    calls = []

    def chunks(start, stop):
        calls.append((start, stop))
        return log_probs[start:stop]

    again = align_long(chunks, segs, frame_duration=0.02, width=64,
                       num_frames=log_probs.shape[0], chunk_frames=500)
    assert again == got and calls[0] == (0, 500)


def test_a_sentence_not_in_the_audio_has_the_lowest_confidence():
    need_c_kernel()
    log_probs, segs, _ = recording(2)
    g = torch.Generator().manual_seed(99)
    wrong = torch.randint(1, JUNK, (15,), generator=g).tolist()
    segs = segs[:5] + [wrong] + segs[5:]
    got = align_long(log_probs, segs, width=64)
    right = [s.score for s in got if s.segment != 5]
    assert got[5].score < min(right) - 1.0, (got[5].score, min(right))
    assert max(right) <= 0.0


def test_long_alignment_errors():
    need_c_kernel()
    log_probs = torch.log_softmax(torch.randn(10, C), 1)
    with pytest.raises(ValueError, match="segment 1 is empty"):
        align_long(log_probs, [[1], []])
    with pytest.raises(ValueError, match="the recording has 10 frames, the transcript needs "
                                         "at least 14 .12 tokens and 2 adjacent repeats."):
        align_long(log_probs, [[1, 2, 3, 4, 5, 6], [1, 1, 2, 2, 3, 4]])
    with pytest.raises(ValueError, match="segment 0 holds id 0"):
        align_long(log_probs, [[0, 1]])
    with pytest.raises(ValueError, match="need num_frames"):
        align_long(lambda a, b: log_probs[a:b], [[1]])
    with pytest.raises(ValueError, match="every chunk must have the same width"):
        align_long(lambda a, b: log_probs[a:b, :C if a == 0 else C - 1], [[1]],
                   num_frames=10, chunk_frames=5)
    with pytest.raises(ValueError, match=r"log_probs must be a floating-point tensor \(T, C\)"):
        align_long(log_probs[None], [[1]])
    with pytest.raises(MemoryError, match="over max_memory"):
        align_long(log_probs, [[1, 2]], max_memory=10)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [85, 137, 160, 345, 381])
def test_a_narrow_band_is_proven_or_widened(seed, threads):
    """Random emissions in which a band of 8 states holds a path that keeps clear of
    its edges and is still not the best one (found by a search over seeds with the
    proof switched off): the proof refuses it, the band widens, and the full Viterbi's
    path comes back."""
    need_c_kernel()
    g = torch.Generator().manual_seed(seed)
    frames = int(torch.randint(8, 40, (1,), generator=g))
    segs = [torch.randint(1, C, (int(torch.randint(1, 3, (1,), generator=g)),),
                          generator=g).tolist()
            for _ in range(int(torch.randint(1, 4, (1,), generator=g)))]
    log_probs = torch.log_softmax(3.0 * torch.randn(frames, C, generator=g,
                                                    dtype=torch.float64), 1)
    got = align_long(log_probs, segs, width=8, threads=threads)
    assert [t for seg in got for t in seg.tokens] == full_viterbi(log_probs, segs, -5.0)


def test_a_callable_is_never_entered_by_two_threads_at_once():
    """With the proof's pass on a second thread, the emissions callable is called by
    both threads (forward chunks in order, backward ones in reverse), one call at a time,
    under the caller's grad mode; the result is the one-thread result."""
    import threading
    import time

    need_c_kernel()
    log_probs, segs, _ = recording(3)
    inside, overlaps, callers, grad = [0], [0], set(), set()

    def chunks(start, stop):
        inside[0] += 1
        overlaps[0] += inside[0] > 1
        callers.add(threading.get_ident())
        grad.add(torch.is_grad_enabled())
        time.sleep(0.002)  # long enough for the other thread to come in, were it let
        inside[0] -= 1
        return log_probs[start:stop]

    kwargs = dict(num_frames=log_probs.shape[0], chunk_frames=100, width=64,
                  frame_duration=0.02)
    with torch.no_grad():
        two = align_long(chunks, segs, threads=2, **kwargs)
    assert overlaps == [0] and len(callers) >= 2 and grad == {False}  # a worker per pass
    assert two == align_long(chunks, segs, threads=1, **kwargs)


def band_reference(emissions, labels, lo, width):
    """The banded passes by their definitions, one state at a time, in float64: the
    forward's ``exits`` and the backward's ``entries`` (see cpu.c), the best score and
    the backward scores G_0 (for the score's check)."""
    T, S = emissions.shape[0], labels.numel()
    ninf = float("-inf")
    lab = labels.tolist()
    skip_into = [s >= 2 and s % 2 == 1 and lab[s] != lab[s - 2] for s in range(S)]

    def band(t):
        return range(int(lo[t]), min(int(lo[t]) + width, S))

    prev = {0: 0.0}  # the start: state 0 before the first frame
    exits = [ninf] * T
    for t in range(T):
        if t > 0:
            plo, top = int(lo[t - 1]), int(lo[t]) + width
            exits[t] = max([v for s, v in prev.items()
                            if s < int(lo[t]) or (s >= top - 2 and s + 1 < S)] + [ninf])
        cur = {}
        for s in band(t):
            best = max(prev.get(s, ninf), prev.get(s - 1, ninf),
                       prev.get(s - 2, ninf) if skip_into[s] else ninf)
            cur[s] = best + float(emissions[t, lab[s]]) if best > ninf else ninf
        prev = cur
    score = max(prev.get(S - 1, ninf), prev.get(S - 2, ninf))
    nxt, entries = {}, [ninf] * T
    for t in range(T - 1, -1, -1):
        cur = {}
        for s in band(t):
            if t == T - 1:
                best = 0.0 if s >= S - 2 else ninf
            else:
                best = max(nxt.get(s, ninf), nxt.get(s + 1, ninf),
                           nxt.get(s + 2, ninf) if s + 2 < S and skip_into[s + 2] else ninf)
            cur[s] = best + float(emissions[t, lab[s]]) if best > ninf else ninf
        if t > 0:
            plo = int(lo[t - 1])
            entries[t] = max([v for s, v in cur.items() if s < plo + 2 or s > plo + width - 1]
                             + [ninf])
        nxt = cur
    return (torch.tensor(exits, dtype=torch.float64), torch.tensor(entries, dtype=torch.float64),
            score)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), frames=st.integers(1, 24), tokens=st.integers(1, 8),
       width=st.integers(1, 12))
@example(seed=0, frames=4, tokens=2, width=1)  # the band moves by 2 > its width
@example(seed=0, frames=3, tokens=1, width=1)
@example(seed=3, frames=9, tokens=4, width=2)
@example(seed=7, frames=12, tokens=5, width=1)
def test_the_band_kernels_match_their_definitions(seed, frames, tokens, width):
    """The C kernel's banded forward (score, exits) and backward (entries) passes equal
    their definitions computed state by state, for random band starts, widths, labels
    with repeats and gaps, in one block and in chunks of 5 frames."""
    need_c_kernel()
    from _seq_loss_kernels import cpu

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 4, (tokens,), generator=g)  # few classes: repeats are common
    labels = torch.zeros(2 * tokens + 1, dtype=torch.long)
    labels[1::2] = ids
    labels[0::2] = torch.where(torch.rand(tokens + 1, generator=g) < 0.5, 0, 4)  # blank or *
    S = labels.numel()
    emissions = torch.randn(frames, 5, generator=g, dtype=torch.float64)
    steps = torch.randint(0, 3, (frames,), generator=g)
    lo = torch.cumsum(steps, 0).clamp(max=max(S - width, 0)) - steps[0]
    lo = torch.cummax(lo.clamp(min=0), 0).values
    exits, entries, score = band_reference(emissions, labels, lo, width)
    for chunk in (frames, 5):
        blocks = list(emissions.split(chunk))
        starts = [sum(b.shape[0] for b in blocks[:i]) for i in range(len(blocks))]
        path, got, ex, _ = cpu._band_forward(None, blocks, labels, lo, width, frames)
        back = cpu._band_backward(list(zip(starts, blocks, strict=True))[::-1], labels, lo,
                                  width, frames)
        assert back.tolist()[1:] == pytest.approx(entries.tolist()[1:])
        if score == float("-inf"):
            assert got == score and ex is None
            continue
        assert got == pytest.approx(score)
        assert ex.tolist()[1:] == pytest.approx(exits.tolist()[1:])
        # The path scores what the pass says, and stays in the band.
        assert (path >= lo).all() and (path < lo + width).all()
        assert float(emissions[torch.arange(frames), labels[path]].sum()) == pytest.approx(got)
