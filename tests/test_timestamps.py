"""ctc_timestamps: alignments as timed tokens and words, and CTM, SubRip and WebVTT
text, to known values and round trips."""
import math
import re

import numpy as np
import pytest
import torch

import seq_loss_util as S
from ctc_timestamps import Timed, timed_tokens, timed_words, to_ctm, to_srt, to_webvtt

TOKENS = ["<pad>", "|", "A", "B", "C"]


def test_tokens_and_words_from_an_alignment():
    """"AB|C" planted at known frames: each token's seconds (20 ms frames), its mean
    log-probability, and the words."""
    frames = torch.tensor([0, 2, 2, 0, 3, 0, 1, 1, 0, 4, 4, 4, 0])
    logits = 6.0 * torch.nn.functional.one_hot(frames, 5).double()[None]
    found = S.forced_align(logits, torch.tensor([[2, 3, 1, 4]]))
    log_probs = torch.log_softmax(logits[0], 1)
    scores = log_probs.gather(1, found.labels[0].clamp(min=0)[:, None])[:, 0]
    timed = timed_tokens(found.labels[0], TOKENS, frame_duration=0.02, frame_scores=scores)
    assert [(t.text, round(t.start_s, 6), round(t.end_s, 6)) for t in timed] == [
        ("A", 0.02, 0.06), ("B", 0.08, 0.10), ("|", 0.12, 0.16), ("C", 0.18, 0.24)]
    assert timed[0].score == pytest.approx(float(log_probs[1, 2]))
    words = timed_words(timed)
    assert [(w.text, round(w.start_s, 6), round(w.end_s, 6)) for w in words] == [
        ("AB", 0.02, 0.10), ("C", 0.18, 0.24)]
    # Weighted by frames: A has 2, B has 1.
    assert words[0].score == pytest.approx((2 * timed[0].score + timed[1].score) / 3)
    assert math.isnan(timed_tokens(found.labels[0], TOKENS, frame_duration=0.02)[0].score)


def test_sentencepiece_words_and_skipped_wildcards():
    pieces = ["<b>", "\u2581HEL", "LO", "\u2581WORLD", "*"]
    labels = torch.tensor([4, 4, 1, 1, 0, 2, 0, 3, 3, 4, -1, -1])
    timed = timed_tokens(labels, pieces, frame_duration=0.5, skip=(4,))
    assert [t.text for t in timed] == ["\u2581HEL", "LO", "\u2581WORLD"]
    words = timed_words(timed, word_delimiter="\u2581")
    assert [(w.text, w.start_s, w.end_s) for w in words] == [("HELLO", 1.0, 3.0),
                                                             ("WORLD", 3.5, 4.5)]


ITEMS = [Timed(0.0, 1.5, "HELLO", math.log(0.9)), Timed(3599.9996, 3723.25, "a --> b & <c>"),
         Timed(5.0, 5.0, "two\nlines")]


def test_ctm_srt_and_webvtt_text():
    assert to_ctm(ITEMS, utterance="talk1") == (
        "talk1 1 0.000 1.500 HELLO 0.9000\n"
        "talk1 1 3600.000 123.250 a_-->_b_&_<c>\n"
        "talk1 1 5.000 0.000 two_lines\n")
    assert to_srt(ITEMS) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHELLO\n\n"
        "2\n01:00:00,000 --> 01:02:03,250\na --> b & <c>\n\n"
        "3\n00:00:05,000 --> 00:00:05,000\ntwo\nlines\n")
    assert to_webvtt(ITEMS) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nHELLO\n\n"
        "01:00:00.000 --> 01:02:03.250\na --&gt; b &amp; &lt;c>\n\n"
        "00:00:05.000 --> 00:00:05.000\ntwo\nlines\n")
    assert to_ctm([]) == "" and to_srt([]) == "" and to_webvtt([]) == "WEBVTT\n"


def test_subtitle_times_read_back_to_the_millisecond():
    g = torch.Generator().manual_seed(0)
    starts = (torch.rand(50, generator=g, dtype=torch.float64) * 7200).tolist()
    items = [Timed(s, s + 0.25 * (i + 1), f"w{i}") for i, s in enumerate(starts)]
    clock = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"
    for text in (to_srt(items), to_webvtt(items)):
        read = [(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000)
                for h, m, s, ms in re.findall(clock, text)]
        wanted = [t for item in items for t in (item.start_s, item.end_s)]
        assert len(read) == len(wanted)
        assert max(abs(a - b) for a, b in zip(read, wanted, strict=True)) <= 0.0005 + 1e-9


def test_timestamp_errors():
    with pytest.raises(ValueError, match="frame_duration must be a positive number"):
        timed_tokens(torch.tensor([1]), TOKENS, frame_duration=0)
    with pytest.raises(ValueError, match="label 7 at frame 1 has no token"):
        timed_tokens(torch.tensor([0, 7]), TOKENS, frame_duration=0.02)
    with pytest.raises(ValueError, match="frame_scores has 1 frames, frame_labels 2"):
        timed_tokens(torch.tensor([0, 2]), TOKENS, frame_duration=0.02,
                     frame_scores=torch.zeros(1))
    for bad in ([Timed(2.0, 1.0, "x")], [Timed(math.nan, 1.0, "x")], [Timed(-1.0, 1.0, "x")]):
        with pytest.raises(ValueError, match="item 0 has times"):
            to_srt(bad)
    with pytest.raises(ValueError, match=r"one example's labels \(T,\), got shape \(2, 2\)"):
        timed_tokens(torch.tensor([[0, 2], [3, 0]]), TOKENS, frame_duration=0.02)
    assert timed_tokens(torch.tensor([2]), TOKENS, frame_duration=np.float32(0.5))[0].end_s == 0.5
    with pytest.raises(ValueError, match="without spaces"):
        to_ctm(ITEMS, utterance="my talk")


def test_long_alignment_segments_and_tokens():
    """align_long's result as subtitles per sentence (its times and confidence) and as
    words per segment (its token spans in seconds), on a planted recording."""
    from optional_deps import need_c_kernel
    from test_long_align import recording

    from ctc_long_align import align_long
    from ctc_timestamps import timed_segment_tokens, timed_segments

    need_c_kernel()
    log_probs, segs, _ = recording(4, segments=4)
    names = ["-"] + [chr(ord("a") + i) for i in range(11)]
    names[5] = "|"  # class 5 as wav2vec2's word delimiter
    found = align_long(log_probs, segs, frame_duration=0.02, width=64)
    texts = ["".join(names[t] for t in seg) for seg in segs]
    subtitles = timed_segments(found, texts)
    assert [(t.start_s, t.end_s, t.text, t.score) for t in subtitles] == [
        (s.start_s, s.end_s, texts[s.segment], s.score) for s in found]
    assert to_srt(subtitles).count("-->") == 4
    tokens = timed_segment_tokens(found, names, frame_duration=0.02)
    assert [(round(t.start_s / 0.02), round(t.end_s / 0.02), t.text) for t in tokens] == [
        (a, b, names[k]) for s in found for k, a, b in s.tokens]
    words = [w for s in found for w in timed_words(
        timed_segment_tokens([s], names, frame_duration=0.02))]
    assert [w.text for w in words] == [w for text in texts for w in text.split("|") if w]
    assert all(found[0].start_s <= w.start_s < w.end_s <= found[-1].end_s for w in words)
    with pytest.raises(ValueError, match="pass frame_duration to align_long"):
        timed_segments(align_long(log_probs, segs, width=64), texts)
    with pytest.raises(ValueError, match="segment 3 has no text"):
        timed_segments(found, texts[:3])
