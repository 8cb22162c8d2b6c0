"""Long recordings: a transcript split into segments (utterances, sentences) aligned to
one long emission sequence (an hour and more), with wildcards between the segments and
at both ends so that untranscribed stretches do not drag the alignment.

* :func:`align_long` ``(log_probs (T, C) or a callable, segments, *, blank=0,
  frame_duration=None, wildcard_score=-5.0)`` -> ``[AlignedSegment]``: each segment's
  frames and seconds, its tokens' spans, and a confidence score.

The Viterbi recursion runs inside a band of states around the path (the C kernel's
``ctc_viterbi_band``, 2 bits of back-pointer per state kept): first around the diagonal,
then around the path found, twice as wide, until a bound proves that no path leaving
the band could score as much (each scores at most the best forward score where it first
leaves, plus the largest emission of every frame it spends outside or in between, plus
the best backward score where it last comes back: a banded backward pass gives those),
or the band holds every state: the result is the full Viterbi's either way. The emissions can come in chunks from a callable, read in
order once per pass.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

import seq_loss_util

__all__ = ["AlignedSegment", "align_long"]


class AlignedSegment(NamedTuple):
    """One segment of the transcript in the recording: frames ``start <= t < end`` (its
    first token's first frame to one past its last token's last), in seconds where the
    frame duration is known, each token's ``(token, start, end)``, and ``score``: the
    segment's confidence, the lowest mean over windows of ``window`` frames of
    ``log p(aligned class) - max log p`` (0 is best; ctc-segmentation's definition)."""

    segment: int
    start: int
    end: int
    start_s: float
    end_s: float
    score: float
    tokens: list


def _emission_blocks(log_probs, num_frames, chunk_frames):
    """An iterable factory over (frames, C) blocks of the emissions, in order."""
    if callable(log_probs):
        if num_frames is None:
            raise ValueError("emissions given as a callable need num_frames")

        def blocks(reverse=False):
            width = None
            starts = range(0, num_frames, chunk_frames)
            for start in (reversed(starts) if reverse else starts):
                stop = min(start + chunk_frames, num_frames)
                block = torch.as_tensor(log_probs(start, stop))
                if block.dim() != 2 or block.shape[0] != stop - start:
                    raise ValueError(f"the emissions callable gave shape "
                                     f"{tuple(block.shape)} for frames {start} to {stop}; "
                                     f"expected ({stop - start}, C)")
                if width is not None and block.shape[1] != width:
                    raise ValueError(f"the emissions callable gave {block.shape[1]} classes "
                                     f"for frames {start} to {stop}, {width} before: every "
                                     "chunk must have the same width")
                width = block.shape[1]
                yield block
        return blocks, num_frames
    log_probs = torch.as_tensor(log_probs)
    if log_probs.dim() != 2 or not log_probs.dtype.is_floating_point:
        raise ValueError(f"log_probs must be a floating-point tensor (T, C), got shape "
                         f"{tuple(log_probs.shape)} and dtype {log_probs.dtype}")
    frames = log_probs.shape[0]

    def slices(reverse=False):
        starts = range(0, frames, chunk_frames)
        return (log_probs[a:a + chunk_frames] for a in (reversed(starts) if reverse else starts))

    return slices, frames


def _graph(segments, blank: int, wildcard: int):
    """The states: a wildcard gap, then each segment's tokens with blanks between them,
    a wildcard gap after each segment. Returns the state labels (S,) and, per segment,
    its first and last token state."""
    labels, spans = [wildcard], []
    for k, segment in enumerate(segments):
        ids = [int(t) for t in segment]
        if not ids:
            raise ValueError(f"segment {k} is empty: every segment needs a token")
        first = len(labels)
        for i, token in enumerate(ids):
            if i:
                labels.append(blank)
            labels.append(token)
        spans.append((first, len(labels) - 1))
        labels.append(wildcard)
    return torch.tensor(labels, dtype=torch.long), spans


def align_long(log_probs, segments: Sequence[Sequence[int]], *, blank: int = 0,
               frame_duration: float | None = None, wildcard_score: float = -5.0,
               num_frames: int | None = None, chunk_frames: int = 65536,
               width: int | None = None, window: int = 30,
               max_memory: int = 2 << 30, threads: int = 2) -> list:
    """Aligns ``segments`` (lists of class ids, no blank) to one recording.

    Args:
      log_probs: ``(T, C)`` log-probabilities of the whole recording, or a callable
        ``(start, stop) -> (stop - start, C)`` that gives them in chunks (then
        ``num_frames`` says T), so that they need never all be in memory.
      segments: the transcript, one list of class ids per segment, in order.
      blank: the blank's class id.
      frame_duration: seconds per frame (0.02 for wav2vec2), for ``start_s``, ``end_s``.
      wildcard_score: each frame outside every segment (before, between, after) is the
        blank or the wildcard at this log-score, whichever scores more: below what the
        model gives the transcript where it is confident, so that segments keep their
        frames and untranscribed speech goes to the wildcard.
      width: the band's first width in states (None: a 16th of them, at least 1024),
        doubled until the path is proven the full Viterbi's.
      window: frames per window of the confidence score.
      max_memory: bytes the back-pointers may take (2 bits per state and frame in the
        band); a band that would need more raises ``MemoryError`` naming how much,
        rather than take the machine's memory (default 2 GiB).
      threads: 2 runs each pass's backward pass (the proof) on a second thread beside the
        forward pass; 1 runs them one after the other. A callable giving the emissions is
        then called from both threads, never at once, with the caller's grad mode.

    Returns a list of :class:`AlignedSegment`, one per segment, in order. Raises
    ``ValueError`` where the recording is too short for the transcript, naming the
    frames needed."""
    if seq_loss_util._kernel_backend() is None:
        raise RuntimeError("align_long needs the compiled C kernel, which is not built here "
                           "or is switched off (SEQ_LOSS_UTIL_KERNEL=0); see backend()")
    from _seq_loss_kernels import cpu
    blocks, frames = _emission_blocks(log_probs, num_frames, chunk_frames)
    first = next(iter(blocks()), None)
    classes = first.shape[1] if first is not None else 0
    if not 0 <= blank < max(classes, 1):
        raise ValueError(f"blank must be a class id in [0, {classes - 1}], got {blank}")
    labels, spans = _graph(segments, blank, classes)
    bad = [(k, int(t)) for k, seg in enumerate(segments) for t in seg
           if not 0 <= int(t) < classes or int(t) == blank]
    if bad:
        raise ValueError(f"segment {bad[0][0]} holds id {bad[0][1]}: expected class ids in "
                         f"[0, {classes - 1}] other than the blank {blank}")
    tokens = labels[1::2]  # every odd state is a token
    repeats = int(((labels[2:] == labels[:-2]) & (torch.arange(2, labels.numel()) % 2 == 1))
                  .sum()) if labels.numel() > 2 else 0
    needed = int(sum(len(s) for s in segments)) + repeats
    if frames < needed:
        raise ValueError(f"the recording has {frames} frames, the transcript needs at least "
                         f"{needed} ({tokens.numel()} tokens and {repeats} adjacent repeats)")
    score = float(wildcard_score)

    def extend(block):
        column = block[:, blank:blank + 1].clamp(min=score)
        return torch.cat([block, column.to(block.dtype)], 1).to(
            torch.float64 if block.dtype == torch.float64 else torch.float32)

    def extended():
        return (extend(block) for block in blocks())

    def backwards():  # (first frame, block), last block first
        t1 = frames
        for block in blocks(reverse=True):
            t1 -= block.shape[0]
            yield t1, extend(block)

    states = labels.numel()
    # The first band: a 16th of the states (at least 1024). An hour's path strays some
    # thousands of states from the diagonal (untranscribed stretches hold it back), and
    # the bound is loose across such a stretch (it allows every frame outside the band
    # its best class, where the path pays the wildcard's score): a 32nd of the states
    # was proven only at twice its width on the synthetic hours, one pass wasted.
    first = max(1024, states // 16) if width is None else int(width)
    band = min(max(first, 8), states)
    centre = torch.linspace(0, states - 1, frames, dtype=torch.float64)
    # With one thread, the backward pass that proves the path exact runs only where the
    # path keeps a quarter of the band's width from both edges: nearer, the band is
    # plainly too narrow there, and it widens at once.
    while True:
        needed = frames * ((band + 3) // 4)
        if needed > max_memory:
            raise MemoryError(f"aligning {frames} frames needs a band of {band} states, "
                              f"{needed / 2**30:.1f} GiB of back-pointers, over max_memory "
                              f"({max_memory / 2**30:.1f} GiB): split the recording, or "
                              "raise max_memory")
        lo = (centre - band / 2).round().long().clamp(0, states - band)
        lo = torch.cummax(lo, 0).values
        hi = lo + band - 1
        margin = max(band // 4, 1)

        def clear(path, lo=lo, hi=hi, margin=margin):
            near = (((path < lo + margin) & (lo > 0))
                    | ((path > hi - margin) & (hi < states - 1)))
            return not bool(near.any())

        path, best, exact = cpu.viterbi_band(None, labels, lo, band, chunks=extended(),
                                             backward_chunks=backwards(), prove=clear,
                                             threads=threads)
        if exact or band >= states:
            break
        if best > -math.inf:
            centre = path.double()
        band = min(2 * band, states)
    if best == -math.inf:
        raise ValueError("no alignment of the transcript to the recording exists")
    return _segments(path, labels, spans, extended, frame_duration, window)


def _segments(path, labels, spans, extended, frame_duration, window) -> list:
    """Per segment: frames, token spans and the windowed confidence."""
    # Per frame: the aligned class's log-probability less the frame's best.
    parts = []
    for t0, block in _offsets(extended()):
        states = path[t0:t0 + block.shape[0]]
        chosen = block.gather(1, labels[states][:, None])[:, 0]
        parts.append((chosen - block[:, :-1].amax(1)).double())
    ratio = torch.cat(parts)
    step = float(frame_duration) if frame_duration is not None else math.nan
    out = []
    for k, (first, last) in enumerate(spans):
        inside = (path >= first) & (path <= last)
        where = inside.nonzero()[:, 0]
        start, end = int(where[0]), int(where[-1]) + 1
        seg = path[start:end]
        begin, finish = seq_loss_util._runs(seg)
        token_spans = [(int(labels[s]), start + int(a), start + int(z))
                       for s, a, z in zip(seg[begin].tolist(), begin.tolist(), finish.tolist(),
                                          strict=True) if s % 2 == 1]
        r = ratio[start:end]
        n = min(window, r.numel())
        sums = torch.cat([torch.zeros(1, dtype=torch.float64), r.cumsum(0)])
        confidence = float(((sums[n:] - sums[:-n]) / n).min())
        out.append(AlignedSegment(k, start, end, start * step, end * step, confidence,
                                  token_spans))
    return out


def _offsets(blocks):
    t0 = 0
    for block in blocks:
        yield t0, block
        t0 += block.shape[0]
