"""Alignments as timed text, and the files other tools load: CTM (NIST's, for sclite
and Kaldi), SubRip (.srt) and WebVTT (.vtt) subtitles, or a plain list.

* :class:`Timed` ``(start_s, end_s, text, score)``: one token, word or segment.
* :func:`timed_tokens` ``(frame_labels, tokens, *, frame_duration, blank=0,
  frame_scores=None)``: each run of one label in an alignment's per-frame labels
  (:func:`seq_loss_util.forced_align`'s ``labels[b]``, or torchaudio's path), blanks
  dropped, in seconds; ``score`` the mean of its frames' scores (NaN without them).
* :func:`timed_words` ``(timed, *, word_delimiter="|")``: tokens grouped into words, at
  a delimiter token (wav2vec2's ``|``) or where a token starts with ``"\u2581"``
  (SentencePiece); a word's score is its tokens' mean, weighted by frames.
* :func:`timed_segments` ``(found, texts)``, :func:`timed_segment_tokens` ``(found,
  tokens, *, frame_duration)``: :func:`ctc_long_align.align_long`'s segments (a
  subtitle per sentence, the confidence as the score) and their tokens (for
  :func:`timed_words` and CTM).
* :func:`to_ctm`, :func:`to_srt`, :func:`to_webvtt`: the text of each file.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

import seq_loss_util

__all__ = ["Timed", "timed_tokens", "timed_words", "timed_segments", "timed_segment_tokens",
           "to_ctm", "to_srt", "to_webvtt"]


class Timed(NamedTuple):
    """A stretch of audio ``start_s <= t < end_s`` (seconds) holding ``text``, with a
    ``score`` (mean log-probability per frame where known, else NaN)."""

    start_s: float
    end_s: float
    text: str
    score: float = math.nan


def _check_duration(frame_duration) -> float:
    if isinstance(frame_duration, bool) or not isinstance(
            frame_duration, (int, float, np.integer, np.floating)) or \
            not (math.isfinite(frame_duration) and frame_duration > 0):
        raise ValueError(f"frame_duration must be a positive number of seconds (0.02 for "
                         f"wav2vec2's 20 ms frames), got {frame_duration!r}")
    return float(frame_duration)


def timed_tokens(frame_labels, tokens: Sequence[str], *, frame_duration: float,
                 blank: int = 0, frame_scores=None, skip=()) -> list:
    """Each run of one label in ``frame_labels`` ``(T,)`` (class ids; the blank, and ids
    in ``skip`` such as a wildcard, and -1 padding are dropped), as :class:`Timed` in
    seconds with its token's text ``tokens[id]`` and the mean of ``frame_scores``
    ``(T,)`` over its frames."""
    step = _check_duration(frame_duration)
    labels = torch.as_tensor(frame_labels).long().cpu()
    if labels.dim() != 1:
        raise ValueError(f"frame_labels must be one example's labels (T,), got shape "
                         f"{tuple(labels.shape)}: pass each row of a batch on its own")
    if frame_scores is not None:
        frame_scores = torch.as_tensor(frame_scores).to("cpu", torch.float64)
        if frame_scores.shape != labels.shape:
            raise ValueError(f"frame_scores has {frame_scores.numel()} frames, frame_labels "
                             f"{labels.numel()}: they must be the same")
    if not labels.numel():
        return []
    begin, end = seq_loss_util._runs(labels)
    if frame_scores is not None:
        sums = torch.cat([torch.zeros(1, dtype=torch.float64), frame_scores.cumsum(0)])
        means = ((sums[end] - sums[begin]) / (end - begin)).tolist()
    else:
        means = [math.nan] * begin.numel()
    out = []
    dropped = {blank, -1, *skip}
    for label, a, z, score in zip(labels[begin].tolist(), begin.tolist(), end.tolist(), means,
                                  strict=True):
        if label in dropped:
            continue
        if not 0 <= label < len(tokens):
            raise ValueError(f"label {label} at frame {a} has no token: tokens has "
                             f"{len(tokens)} entries")
        out.append(Timed(a * step, z * step, tokens[label], score))
    return out


def timed_words(timed: Sequence[Timed], *, word_delimiter: str = "|") -> list:
    """Tokens (:func:`timed_tokens`) grouped into words: a word ends at a delimiter token
    (which is dropped), or, with ``word_delimiter="\u2581"``, before a token that starts
    with it (SentencePiece). A word spans its first token's start to its last token's
    end; its score is its tokens' scores weighted by their lengths."""
    words: list[Timed] = []
    current: list[Timed] = []

    def close():
        if not current:
            return
        text = "".join(t.text for t in current).replace("\u2581", "")
        frames = [t.end_s - t.start_s for t in current]
        score = sum(t.score * f for t, f in zip(current, frames, strict=True)) / sum(frames)
        words.append(Timed(current[0].start_s, current[-1].end_s, text, score))
        current.clear()

    for item in timed:
        if word_delimiter == "\u2581":
            if item.text.startswith("\u2581"):
                close()
            current.append(item)
        elif item.text == word_delimiter:
            close()
        else:
            current.append(item)
    close()
    return [w for w in words if w.text]


def timed_segments(found, texts: Sequence[str]) -> list:
    """``align_long``'s segments as :class:`Timed`: ``texts[segment]`` from its start to
    its end in seconds, its confidence as the score (``to_ctm`` writes ``exp`` of it).
    ``align_long`` must have had ``frame_duration``."""
    out = []
    for seg in found:
        if not (math.isfinite(seg.start_s) and math.isfinite(seg.end_s)):
            raise ValueError("the segments have no times in seconds: pass frame_duration "
                             "to align_long")
        if not 0 <= seg.segment < len(texts):
            raise ValueError(f"segment {seg.segment} has no text: texts holds {len(texts)}")
        out.append(Timed(seg.start_s, seg.end_s, str(texts[seg.segment]), seg.score))
    return out


def timed_segment_tokens(found, tokens: Sequence[str], *, frame_duration: float) -> list:
    """The tokens of ``align_long``'s segments, in order, as :class:`Timed` (score NaN:
    the segments keep only their confidence), ``tokens[id]`` their text. For words, give
    :func:`timed_words` one segment at a time, ``timed_segment_tokens([seg], ...)``, so
    that no word runs from one segment into the next."""
    step = _check_duration(frame_duration)
    return [Timed(a * step, b * step, tokens[token]) for seg in found
            for token, a, b in seg.tokens]


def _check_items(items: Sequence[Timed]) -> list:
    out = []
    for i, item in enumerate(items):
        start, end, text = float(item[0]), float(item[1]), str(item[2])
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            raise ValueError(f"item {i} has times {start!r} to {end!r}: they must be finite, "
                             "start >= 0 and end >= start")
        score = float(item[3]) if len(item) > 3 else math.nan
        out.append(Timed(start, end, text, score))
    return out


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def to_ctm(items: Sequence[Timed], *, utterance: str = "utt", channel: str = "1",
           confidence: bool = True) -> str:
    """NIST CTM: ``utterance channel start duration text [confidence]`` per line, times
    in seconds to the millisecond; the confidence is ``exp(score)`` (a probability,
    where the score is a mean log-probability) and left out where unknown."""
    if not utterance or any(c.isspace() for c in utterance + channel):
        raise ValueError("utterance and channel must be non-empty and without spaces")
    lines = []
    for item in _check_items(items):
        text = "_".join(item.text.split()) or "<empty>"
        line = f"{utterance} {channel} {item.start_s:.3f} {item.end_s - item.start_s:.3f} {text}"
        if confidence and math.isfinite(item.score):
            line += f" {min(1.0, math.exp(item.score)):.4f}"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def to_srt(items: Sequence[Timed]) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` and their text."""
    cues = []
    for n, item in enumerate(_check_items(items), start=1):
        text = "\n".join(line for line in item.text.splitlines() if line.strip()) or " "
        cues.append(f"{n}\n{_clock(item.start_s, ',')} --> {_clock(item.end_s, ',')}\n{text}\n")
    return "\n".join(cues)


def to_webvtt(items: Sequence[Timed]) -> str:
    """WebVTT: the header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` and their text
    (``-->``, ``&`` and ``<`` escaped, as cue text cannot hold them)."""
    cues = ["WEBVTT\n"]
    for item in _check_items(items):
        text = item.text.replace("&", "&amp;").replace("<", "&lt;").replace("-->", "--&gt;")
        text = "\n".join(line for line in text.splitlines() if line.strip()) or " "
        cues.append(f"{_clock(item.start_s, '.')} --> {_clock(item.end_s, '.')}\n{text}\n")
    return "\n".join(cues)
