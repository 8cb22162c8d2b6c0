"""Streaming decoding (ctc_stream): a stream fed chunks of any length ends with what the
offline decoder gives on the whole utterances, token for token, frame for frame and
scores to 1e-6, on both searches (the C kernel and the tensor search), with the word LM,
hotwords, a lexicon and a token LM; greedy's partial results only grow; examples end
early and restart; what every beam agrees on is committed and its history freed; and
misuse gets a message."""
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import ctc_decoder as D
from ngram_lm import write_arpa
from optional_deps import need_c_kernel

LETTERS = ["<pad>", "|", "H", "E", "L", "O", "W", "R", "D", "U", "T"]
CORPUS = ["HELLO WORLD", "HELLO THERE WORLD", "THE WORLD", "HELLO", "WORLD HELLO"]


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    words = write_arpa(CORPUS, folder / "words.arpa", order=3)
    chars = write_arpa([list(s.replace(" ", "|")) for s in CORPUS], folder / "chars.arpa",
                       order=4)
    return words, chars


def decoders(lms):
    words, chars = lms
    return {
        "plain": D.CtcBeamSearchDecoder(LETTERS, beam_size=8, nbest=3),
        "lm+hotwords": D.CtcBeamSearchDecoder(LETTERS, beam_size=8, nbest=3, lm=words,
                                              hotwords=["THERE WORLD"], hotword_weight=2.0),
        "lexicon": D.CtcBeamSearchDecoder(LETTERS, beam_size=8, nbest=2,
                                          lexicon=["HELLO", "WORLD", "THE"], unk_score=-3.0),
        "token-lm": D.CtcBeamSearchDecoder(LETTERS, beam_size=8, nbest=2, lm=words,
                                           token_lm=chars, token_lm_weight=0.3),
    }


def utterances(seed, batch=3, frames=60):
    """Logits ``(B, T, C)`` that spell corpus words with noise, and lengths (one short)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, len(LETTERS), generator=g)
    for b in range(batch):
        text = CORPUS[(seed + b) % len(CORPUS)].replace(" ", "|")
        t = 0
        for ch in text:
            for _ in range(2):
                if t < frames:
                    x[b, t, LETTERS.index(ch)] += 5.0
                    t += 1
            if t < frames:
                x[b, t, 0] += 5.0
                t += 1
    lengths = torch.tensor([frames, frames - 17, frames - 3][:batch])
    return x, lengths


def feed_in_chunks(stream, logits, lengths, cuts):
    """Feeds ``logits`` cut at ``cuts``; each example gets only its own frames."""
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < logits.shape[1])), logits.shape[1]]
    for a, z in zip(bounds, bounds[1:], strict=False):
        stream.feed(logits[:, a:z], (lengths - a).clamp(0, z - a))


def same(streamed, offline):
    assert len(streamed) == len(offline)
    for hyps, want in zip(streamed, offline, strict=True):
        assert [h.tokens for h in hyps] == [h.tokens for h in want]
        assert [h.timesteps for h in hyps] == [h.timesteps for h in want]
        assert [h.text for h in hyps] == [h.text for h in want]
        for h, w in zip(hyps, want, strict=True):
            for field in ("score", "acoustic_score", "lm_score", "unk_score", "token_lm_score"):
                assert math.isclose(getattr(h, field), getattr(w, field), rel_tol=0,
                                    abs_tol=1e-6) or getattr(h, field) == getattr(w, field)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(1, 59), max_size=6),
       which=st.sampled_from(["plain", "lm+hotwords", "lexicon", "token-lm"]))
def test_a_stream_ends_with_the_offline_decoders_result(search, lms, seed, cuts, which):
    decoder = decoders(lms)[which]
    logits, lengths = utterances(seed)
    stream = decoder.stream(batch=3)
    feed_in_chunks(stream, logits, lengths, cuts)
    same(stream.finish(), decoder(logits, lengths))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(1, 59), max_size=6))
def test_ctc_beam_search_streams_too(search, seed, cuts):
    logits, lengths = utterances(seed)
    stream = D.ctc_beam_search_stream(3, beam_size=6, nbest=3)
    feed_in_chunks(stream, logits, lengths, cuts)
    same(stream.finish(), D.ctc_beam_search(logits, lengths, beam_size=6, nbest=3))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(1, 59), max_size=8))
def test_greedy_stream_equals_greedy_decode_and_its_partials_only_grow(seed, cuts):
    logits, lengths = utterances(seed)
    stream = D.greedy_stream(3)
    bounds = [0, *sorted(set(cuts)), 60]
    before = [[] for _ in range(3)]
    for a, z in zip(bounds, bounds[1:], strict=False):
        if a == z:
            continue
        stream.feed(logits[:, a:z], (lengths - a).clamp(0, z - a))
        now = stream.partial()
        for b in range(3):
            pairs = list(zip(now[b].tokens, now[b].timesteps, strict=True))
            assert pairs[:len(before[b])] == before[b]  # what was emitted stays
            before[b] = pairs
    want = D.greedy_decode(logits, lengths)
    assert torch.equal(stream.finish(), want)
    for b in range(3):  # each token at the first frame of its run
        best = logits[b, :lengths[b]].argmax(-1).tolist()
        starts = [t for t in range(len(best))
                  if best[t] != 0 and (t == 0 or best[t] != best[t - 1])]
        assert [t for _, t in before[b]] == starts


def test_an_example_restarted_decodes_its_new_utterance_alone(search, lms):
    decoder = decoders(lms)["lm+hotwords"]
    logits, lengths = utterances(5)
    other, other_len = utterances(9, batch=1, frames=40)
    stream = decoder.stream(batch=3)
    stream.feed(logits[:, :30], (lengths).clamp(max=30))
    first = stream.finish(1)  # example 1 ends early: its 30 frames
    same([first], decoder(logits[1:2, :30], torch.tensor([30])))
    with pytest.raises(ValueError, match="example 1 was finished"):
        stream.feed(logits[:, 30:], (lengths - 30).clamp(min=0))
    stream.reset(1)
    chunk = torch.zeros(3, 40, len(LETTERS))
    chunk[:, :30] = logits[:, 30:]
    chunk[1] = other[0]
    stream.feed(chunk, torch.stack([lengths[0] - 30, other_len[0], lengths[2] - 30]))
    same(stream.finish(), [decoder(logits[:1], lengths[:1])[0],
                           decoder(other, other_len)[0], decoder(logits[2:], lengths[2:])[0]])


def test_partial_results_and_their_frames(search, lms):
    decoder = decoders(lms)["lm+hotwords"]
    logits, lengths = utterances(2, batch=1, frames=60)
    stream = decoder.stream(batch=1)
    assert stream.partial()[0].tokens == []
    texts, before = [], None
    for a in range(0, 60, 16):
        stream.feed(logits[:, a:a + 16])
        part = stream.partial()[0]
        assert all(0 <= t < min(a + 16, 60) for t in part.timesteps)
        assert part.timesteps == sorted(part.timesteps)
        assert part.words == decoder.split_words(part.tokens)[0]  # the kernel spelled them, or split_words
        if before is not None:  # what was final stays
            assert part.tokens[:before.final] == before.tokens[:before.final]
        assert 0 <= part.final <= len(part.tokens)
        texts.append(part.text)
        before = part
    final = stream.finish()[0][0]
    # "THE|WORLD" is spelled in the first 27 frames, noise follows.
    assert texts[0] == "THE WO" and texts[-1].startswith("THE WORLD")  # 16 frames: THE|WO
    assert final.text.startswith("THE WORLD")


def spoken(repeats=50, seed=0):
    """Logits ``(1, T, C)``: words spoken clearly, one after another, with noise."""
    text = "HELLO|WORLD|THERE|" * repeats
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3 * len(text), len(LETTERS), generator=g) * 0.5
    for i, ch in enumerate(text):
        x[0, 3 * i:3 * i + 2, LETTERS.index(ch)] += 6.0
        x[0, 3 * i + 2, 0] += 6.0
    return x


def held_while_streaming(stream, logits, chunk=16):
    held = []
    for a in range(0, logits.shape[1], chunk):
        stream.feed(logits[:, a:a + chunk])
        held.append(stream._c.held(0))
        part = stream.partial()[0]
        assert part.words == stream.decoder.split_words(part.tokens)[0]
    return held


def test_the_partials_of_both_searches_agree_chunk_by_chunk(monkeypatch):
    # The C kernel's best path is its committed tokens and its history since; the tensor
    # search commits nothing. Chunk after chunk they must be the same path.
    need_c_kernel()
    decoder = D.CtcBeamSearchDecoder(LETTERS, beam_size=4, nbest=4)  # every beam's path
    g = torch.Generator().manual_seed(3)
    logits = spoken(repeats=8) + torch.randn(1, 432, len(LETTERS), generator=g) * 1.5
    compiled = decoder.stream(batch=1)
    with monkeypatch.context() as patch:
        patch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
        tensors = decoder.stream(batch=1)
        tensors.feed(logits[:, :1])  # the search is chosen at the first chunk
    compiled.feed(logits[:, :1])
    for a in range(1, logits.shape[1], 7):
        compiled.feed(logits[:, a:a + 7])
        tensors.feed(logits[:, a:a + 7])
        got, want = compiled.partial()[0], tensors.partial()[0]
        assert (got.tokens, got.timesteps) == (want.tokens, want.timesteps), a
    assert compiled._c.held(0)[1] > 50  # tokens were committed on the way
    same(compiled.finish(), tensors.finish())


def test_without_a_horizon_old_alternatives_keep_their_history():
    # The exact search keeps the utterance's best alternatives, and the cheapest ones
    # branch off anywhere: here a doubled letter at some early word. While one lives,
    # nothing after its branch point is agreed on, so the history grows with the audio.
    need_c_kernel()
    decoder = D.CtcBeamSearchDecoder(LETTERS, beam_size=8)
    logits = spoken()
    stream = decoder.stream(batch=1)
    frames, committed, history, _ = held_while_streaming(stream, logits)[-1]
    assert frames == 2700 and committed < 50 and history > 2500
    same(stream.finish(), decoder(logits))


def test_a_horizon_commits_what_is_older_and_frees_its_history():
    need_c_kernel()
    decoder = D.CtcBeamSearchDecoder(LETTERS, beam_size=8)
    logits = spoken()
    stream = decoder.stream(batch=1, horizon=150)  # 3 s of 20 ms frames
    held = held_while_streaming(stream, logits)
    frames, committed, history, size = held[-1]
    assert frames == 2700 and committed > 800
    assert max(h[2] for h in held) <= 150 + 16, "history: the horizon and a chunk at most"
    assert max(h[3] for h in held[-50:]) == max(h[3] for h in held[20:50]) or \
        max(h[3] for h in held) < 100_000, "the state stops growing"
    # No dropped beam would have won here: the offline tokens and frames. The scores
    # differ: the beams dropped made room for ones that merge into the best prefix, so
    # it sums more of its alignments, between the offline search's and the exact CTC
    # probability of its tokens.
    got, want = stream.finish()[0][0], decoder(logits)[0][0]
    assert got.tokens == want.tokens and got.timesteps == want.timesteps
    exact = -torch.nn.functional.ctc_loss(
        logits[0].double().log_softmax(-1)[:, None], torch.tensor([got.tokens]),
        torch.tensor([logits.shape[1]]), torch.tensor([len(got.tokens)]), reduction="sum")
    assert want.acoustic_score - 1e-6 <= got.acoustic_score <= float(exact) + 1e-3
    with pytest.raises(ValueError, match="horizon must be"):
        decoder.stream(batch=1, horizon=0)


@pytest.mark.parametrize("make", [lambda: D.greedy_stream(2),
                                  lambda: D.ctc_beam_search_stream(2, beam_size=4)],
                         ids=["greedy", "beam"])
def test_misuse_gets_a_message(make):
    logits = torch.randn(2, 10, 5)
    stream = make()
    with pytest.raises(ValueError, match="batch of 2 examples"):
        stream.feed(torch.randn(3, 10, 5))
    stream.feed(logits)
    with pytest.raises(ValueError, match="C=6 classes.*had 5"):
        stream.feed(torch.randn(2, 10, 6))
    with pytest.raises(ValueError, match="logits_len"):
        stream.feed(logits, torch.tensor([10, 11]))  # more frames than the chunk has
    stream.finish()
    with pytest.raises(ValueError, match="finish"):
        stream.feed(logits)


def test_a_diverged_frame_is_named_by_its_frame_in_the_utterance(search):
    stream = D.ctc_beam_search_stream(2, beam_size=4)
    stream.feed(torch.randn(2, 10, 5))
    bad = torch.randn(2, 10, 5)
    bad[1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="example 1 at frame 13"):
        stream.feed(bad)


def test_a_bad_chunk_on_threads_names_its_first_bad_frame_and_feeds_nothing(monkeypatch):
    # A chunk big enough for the kernel's two threads: each takes examples for the
    # log-softmax, and the search starts only once every example's is done and none
    # has a bad frame; the lowest example's first bad frame is the one named.
    need_c_kernel()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    g = torch.Generator().manual_seed(5)
    good = torch.randn(32, 40, 6, generator=g)
    stream = D.ctc_beam_search_stream(32, beam_size=16)
    stream.feed(good[:, :16])
    bad = good[:, 16:32].clone()
    bad[20, 2, 1] = float("inf")
    bad[5, 9, 3] = float("nan")
    bad[5, 12, 0] = float("nan")
    with pytest.raises(ValueError, match="example 5 at frame 25"):
        stream.feed(bad)
    stream.feed(good[:, 16:])
    same(stream.finish(), D.ctc_beam_search(good, beam_size=16))


def test_clear_errors_for_a_chunk_the_kernel_refuses_and_nothing_of_it_fed(lms):
    # The usual chunk (CPU float32, int64 lengths) skips the decoders' checks in Python:
    # the kernel checks its lengths, and no frames for a finished example, before it
    # reads a frame. One it refuses takes those checks, which name what is wrong, and
    # nothing of it is searched: the stream then ends as the offline decoder does.
    need_c_kernel()
    decoder = decoders(lms)["lm+hotwords"]
    logits, lengths = utterances(4)
    stream = decoder.stream(batch=3)
    stream.feed(logits[:, :20], lengths.clamp(max=20))
    for frames, message in [
            ([20, 21, 20], "logits_len must be <= the padded time axis of logits (20), got 21 "
                           "for example 1"),
            ([20, 20, -1], "logits_len must be >= 0, got -1 for example 2")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            stream.feed(logits[:, 20:40], torch.tensor(frames))
    stream.finish(2)  # its utterance ends at 20 frames
    with pytest.raises(ValueError, match="example 2 was finished"):
        stream.feed(logits[:, 20:40], torch.tensor([20, 20, 1]))
    stream.feed(logits[:, 20:], (lengths - 20).clamp(min=0) * torch.tensor([1, 1, 0]))
    got = stream.finish()
    same(got[:2], decoder(logits[:2], lengths[:2]))
    same(got[2:], decoder(logits[2:, :20]))


class _InTurn:
    """Two threads' calls of a chunk, made one after the other on this thread, sharing
    the chunk's counters as the library's workers do: the helper's first (it woke
    before the caller) or after the caller returned (it woke late; ``late`` keeps its
    call for the test to make)."""

    def __init__(self, stream, helper_first):
        from _seq_loss_kernels import cpu

        self.run = getattr(cpu._kernel_lib, f"ctc_beam_stream_feed_logits_{stream._c.sfx}")
        self.helper_first, self.late = helper_first, []

    def __call__(self, *args):
        import ctypes

        chunk, shared = args[:-1], (ctypes.c_int64 * 7)()  # (the last: threads)
        if self.helper_first:
            self.run(*chunk, shared)
            return self.run(*chunk, shared)
        verdict = self.run(*chunk, shared)
        self.late.append((chunk, shared))
        return verdict


@pytest.mark.parametrize("helper_first", [True, False])
def test_a_thread_coming_after_a_chunks_work_reads_nothing_and_returns_its_verdict(
        helper_first):
    # A chunk's call returns once no thread reads the chunk. Whichever thread comes
    # after the work is done (the caller, where its helper ran first; a helper that
    # woke after the caller returned) reads nothing and returns the verdict the others
    # left: here the caller still names the bad frame, and late helpers change nothing.
    need_c_kernel()
    g = torch.Generator().manual_seed(5)
    good = torch.randn(32, 40, 6, generator=g)
    bad = good[:, 16:32].clone()
    bad[5, 9, 3] = float("nan")
    stream = D.ctc_beam_search_stream(32, beam_size=16)
    stream.feed(good[:, :1])  # (the kernel's stream opens at the first chunk)
    stream._c._feed = two = _InTurn(stream, helper_first)
    stream.feed(good[:, 1:16])
    with pytest.raises(ValueError, match="example 5 at frame 25"):
        stream.feed(bad)
    stream.feed(good[:, 16:])
    if not helper_first:
        assert [two.run(*chunk, shared) for chunk, shared in two.late] == [0, 1 + 5 * 16 + 9, 0]
    same(stream.finish(), D.ctc_beam_search(good, beam_size=16))


def test_bad_examples_and_batches_are_refused():
    with pytest.raises(ValueError, match="batch must be"):
        D.greedy_stream(0)
    stream = D.ctc_beam_search_stream(2)
    with pytest.raises(ValueError, match=r"example must be an index in \[0, 1\]"):
        stream.reset(2)


def test_a_stream_fed_nothing_finishes_with_the_empty_hypothesis(lms):
    decoder = decoders(lms)["lm+hotwords"]
    same(decoder.stream(batch=2).finish(), decoder(torch.zeros(2, 0, len(LETTERS))))
    assert np.all(D.greedy_stream(2).finish().numpy().shape == (2, 0))


class _Failing:
    """The kernel library with one entry point failing as it does out of memory."""

    def __init__(self, lib, name, value):
        self.lib, self.name, self.value = lib, name, value

    def __getattr__(self, name):
        if name == self.name:
            return lambda *args: self.value
        return getattr(self.lib, name)


@pytest.mark.parametrize("entry, value", [("ctc_beam_stream_open_f32", None),
                                          ("ctc_beam_stream_feed_threads_f32", -1),
                                          ("ctc_beam_stream_finish_f32", -1),
                                          ("ctc_beam_stream_reset_f32", -1)])
def test_the_kernel_running_out_of_memory_is_a_memory_error(monkeypatch, entry, value):
    need_c_kernel()
    from _seq_loss_kernels import cpu

    monkeypatch.setattr(cpu, "_kernel_lib", _Failing(cpu._kernel_lib, entry, value))
    stream = D.ctc_beam_search_stream(2, beam_size=4)
    with pytest.raises(MemoryError, match="could not allocate"):
        stream.feed(torch.randn(2, 5, 6))
        if "finish" in entry:
            stream.finish()
        else:
            stream.reset(0)


def test_an_example_left_with_no_beam_has_no_partial_and_no_hypothesis(search):
    # The blank impossible everywhere and every token below token_min_logp: no path
    # survives the first frame. (The kernel once walked history rows never written.)
    logits = torch.zeros(2, 200, 5)
    logits[0, :, 0] = -math.inf
    stream = D.ctc_beam_search_stream(2, beam_size=4, token_min_logp=-1.0)
    stream.feed(logits[:, :100])
    stream.feed(logits[:, 100:])
    assert stream.partial()[0].tokens == []
    same(stream.finish(), D.ctc_beam_search(logits, beam_size=4, token_min_logp=-1.0))


SENTENCEPIECE = ["<b>", "\u2581", "\u2581a", "b", "", "\u2581c\u00e9", "d\u6f22"]


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.integers(1, 6), max_size=30),
       pieces=st.sampled_from(["sentencepiece", "delimiter"]))
def test_the_kernel_spells_the_words_split_words_does(tokens, pieces):
    # Words closed by a word-start token or a delimiter, empty pieces, a delimiter
    # first, last or repeated, letters of two and three UTF-8 bytes: partial()'s words
    # are the kernel's, and they must be split_words' to the letter.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    vocab = SENTENCEPIECE if pieces == "sentencepiece" else ["<b>", "|", "A", "\u00c9", "",
                                                             "\u6f22", "E"]
    decoder = D.CtcBeamSearchDecoder(vocab, word_delimiter="\u2581" if pieces ==
                                     "sentencepiece" else "|")
    table = cpu.spell_table(decoder._pieces)
    assert cpu.spell_words(tokens, table) == decoder.split_words(tokens)[0]


@pytest.mark.parametrize("vocab", [["<b>", "|", "A", "\u00c9", "\u6f22", "E"],
                                   ["<b>", "|", "A", "B", "C", "E"]])
def test_partials_spell_each_examples_words_in_any_script(vocab):
    # partial() decodes the words of every example shown at once and cuts them at the
    # kernel's byte offsets, which are characters' only in ASCII: each example's words
    # and text must be split_words' of its own tokens, with letters of one, two and
    # three UTF-8 bytes in the batch.
    need_c_kernel()
    decoder = D.CtcBeamSearchDecoder(vocab, word_delimiter="|", beam_size=4)
    spelled = [[3, 0, 4, 1, 2, 5, 1, 4, 4], [2, 1, 5, 0, 5, 1, 3], [4, 4, 1, 2, 3, 1, 5]]
    logits = torch.full((3, 30, len(vocab)), -6.0)
    for b, tokens in enumerate(spelled):
        for i, c in enumerate(tokens):
            logits[b, 3 * i:3 * i + 2, c] = 2.0
            logits[b, 3 * i + 2, 0] = 2.0
    stream = decoder.stream(batch=3)
    for a in range(0, 30, 4):
        stream.feed(logits[:, a:a + 4])
        for p in stream.partial():
            assert p.words == decoder.split_words(p.tokens)[0]
            assert p.text == " ".join(p.words)
    assert [p.text for p in stream.partial()] == [
        h[0].text for h in decoder(logits)]


def test_a_partial_interrupted_midway_leaves_the_next_one_whole():
    # The kernel sends each path from where it departs from the last one sent: a
    # partial() stopped after some examples took theirs (an interrupt, say) has the
    # kernel send every whole path next time, or the paths it keeps would be wrong.
    need_c_kernel()
    decoder = D.CtcBeamSearchDecoder(["<b>", "|", "A", "B\0C"], word_delimiter="|",
                                     beam_size=4)  # (split_words spells: "\0" in a token)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 60, 4, generator=g) * 3
    stream = decoder.stream(batch=3)
    stream.feed(logits[:, :20])
    stream.partial()
    stream.feed(logits[:, 20:40])
    real, calls = stream._words, []

    def interrupted(tokens):
        calls.append(tokens)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(tokens)

    stream._words = interrupted
    with pytest.raises(KeyboardInterrupt):
        stream.partial()
    stream._words = real
    stream.feed(logits[:, 40:])
    once = decoder.stream(batch=3)
    once.feed(logits)  # (it commits at other frames: final may differ)
    assert [p[:4] for p in stream.partial()] == [p[:4] for p in once.partial()]


def test_a_piece_holding_the_joining_byte_is_spelled_by_split_words():
    # The kernel joins words with a 0 byte; a vocabulary with one in a token cannot use
    # it, and partial() spells in Python instead, the same words.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    vocab = ["<b>", "|", "A", "B\0C"]
    decoder = D.CtcBeamSearchDecoder(vocab, word_delimiter="|")
    assert cpu.spell_table(decoder._pieces) is None
    logits = torch.full((1, 12, 4), -8.0)
    for t, c in enumerate([2, 0, 3, 0, 1, 0, 3, 3, 0, 2, 0, 0]):
        logits[0, t, c] = 0.0
    stream = decoder.stream(batch=1)
    stream.feed(logits[:, :5])
    assert stream.partial()[0].words == ["AB\0C"]
    stream.feed(logits[:, 5:])
    part = stream.partial()[0]
    assert part.words == ["AB\0C", "B\0CA"] == decoder(logits)[0][0].words
    assert part.text == "AB\0C B\0CA"


def test_greedy_examples_end_and_restart_one_at_a_time():
    logits, lengths = utterances(4)
    other, other_len = utterances(8, batch=1, frames=40)
    stream = D.greedy_stream(3)
    stream.feed(logits[:, :0])  # a chunk of no frames is no error
    stream.feed(logits[:, :30], lengths.clamp(max=30))
    assert torch.equal(stream.finish(1), D.greedy_decode(logits[1:2, :30])[0])
    stream.reset(1)
    chunk = torch.zeros(3, 40, len(LETTERS))
    chunk[:, :30] = logits[:, 30:]
    chunk[1] = other[0]
    stream.feed(chunk, torch.stack([lengths[0] - 30, other_len[0], lengths[2] - 30]))
    got = stream.finish()
    assert torch.equal(got[0][got[0] >= 0], D.greedy_decode(logits[:1], lengths[:1])[0])
    assert torch.equal(got[1][got[1] >= 0], D.greedy_decode(other, other_len)[0])
    assert torch.equal(got[2][got[2] >= 0], D.greedy_decode(logits[2:], lengths[2:])[0])


def test_beams_that_all_die_mid_stream_leave_the_committed_tokens_alone():
    # 400 frames of clean speech, then frames where only T and U (never said) are
    # possible, each below token_min_logp, and the blank is not: every beam dies. The
    # frames since then have no history rows; partial() must not walk them.
    need_c_kernel()
    text = "HELLO|WORLD|" * 12
    g = torch.Generator().manual_seed(0)
    alive = torch.randn(1, 3 * len(text), len(LETTERS), generator=g) * 0.5
    for i, ch in enumerate(text):
        alive[0, 3 * i:3 * i + 2, LETTERS.index(ch)] += 6.0
        alive[0, 3 * i + 2, 0] += 6.0
    dead = torch.full((1, 16, len(LETTERS)), -math.inf)
    dead[..., LETTERS.index("T")] = dead[..., LETTERS.index("U")] = 0.0
    decoder = D.CtcBeamSearchDecoder(LETTERS, beam_size=4, token_min_logp=-0.5)
    stream = decoder.stream(batch=1)
    stream.feed(alive)
    stream.feed(dead)
    frames, committed, _, _ = stream._c.held(0)
    assert frames == alive.shape[1] + 16
    assert len(stream.partial()[0].tokens) == committed
    assert stream.finish() == decoder(torch.cat([alive, dead], 1)) == [[]]


def test_two_threads_share_a_chunks_examples_and_decode_as_one(monkeypatch, lms):
    # A chunk's examples go to the calling thread and a helper through the kernel's
    # shared counter: each example is searched once, by whichever thread takes it, so
    # the result is the one-thread result (an example searched twice would not be).
    need_c_kernel()
    from _seq_loss_kernels import cpu

    decoder = decoders(lms)["lm+hotwords"]
    logits, lengths = utterances(5, batch=3, frames=60)
    logits, lengths = logits.repeat(4, 1, 1), lengths.repeat(4)  # 12 examples
    lengths[5], lengths[9] = 0, 1
    offline = decoder(logits, lengths)
    one, two = decoder.stream(batch=12), decoder.stream(batch=12)
    workers, jobs, _ = cpu.BeamStream.pool("f32")
    for a in range(0, 60, 7):
        chunk, frames = logits[:, a:a + 7], (lengths - a).clamp(0, 7)
        with monkeypatch.context() as patch:
            patch.setattr(cpu, "_threads", lambda batch, work: 2)
            two.feed(chunk, frames)
        one.feed(chunk, frames)  # too small a chunk for threads: the calling thread
        assert two.partial() == one.partial(), a
    now = cpu.BeamStream.pool("f32")
    assert now[0] >= max(workers, 1) and now[1] == jobs + 9  # each chunk offered a worker
    same(two.finish(), offline)


def test_streams_on_two_python_threads_at_once_each_decode_as_alone(monkeypatch, lms):
    # The library's workers take one chunk at a time: a chunk that finds them busy with
    # another stream's runs on its caller's thread alone. Two servers' threads feeding
    # their own streams at once each get the offline result.
    need_c_kernel()
    import threading

    from _seq_loss_kernels import cpu

    monkeypatch.setattr(cpu, "_threads", lambda batch, work: 2)
    decoder = decoders(lms)["lm+hotwords"]
    batches = [utterances(seed, batch=3, frames=60) for seed in (1, 2)]
    batches = [(x.repeat(3, 1, 1), n.repeat(3)) for x, n in batches]
    results, failures = {}, []

    def serve(i):
        try:
            logits, lengths = batches[i]
            for _ in range(5):
                stream = decoder.stream(batch=9)
                feed_in_chunks(stream, logits, lengths, list(range(3, 60, 3)))
                results.setdefault(i, []).append(stream.finish())
        except BaseException as e:  # noqa: BLE001 (reported below)
            failures.append(e)

    threads = [threading.Thread(target=serve, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures and not any(t.is_alive() for t in threads)
    for i, (logits, lengths) in enumerate(batches):
        offline = decoder(logits, lengths)
        for got in results[i]:
            same(got, offline)



@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(1, 59), min_size=1, max_size=6))
def test_partials_asked_each_chunk_are_those_of_a_stream_asked_once(search, lms, seed, cuts):
    # partial() walks and spells again only the examples given frames since its last
    # call; an example whose utterance has ended keeps its last result, and a caller
    # changing the lists it was given changes nothing the stream returns after.
    decoder = decoders(lms)["lm+hotwords"]
    logits, lengths = utterances(seed)
    lengths[1] = min(int(lengths[1]), min(cuts))  # ends within the first chunk
    asked = decoder.stream(batch=3)
    bounds = [0, *sorted(set(cuts)), 60]
    for a, z in zip(bounds, bounds[1:], strict=False):
        frames = (lengths - a).clamp(0, z - a)
        asked.feed(logits[:, a:z], frames)
        got = asked.partial()
        for p in got:
            p.tokens.append(99)
            p.timesteps.clear()
            p.words.append("JUNK")
        once = decoder.stream(batch=3)
        feed_in_chunks(once, logits[:, :z], lengths.clamp(max=z), [c for c in cuts if c < z])
        assert asked.partial() == once.partial(), (a, z)


def test_the_kernel_sends_a_partial_only_from_where_its_path_changed(monkeypatch, lms):
    # partial() keeps each example's last path and the kernel sends only its tokens
    # from where the path now departs from it (a 10-hour stream's path runs to some
    # 400,000 tokens), yet every call shows the whole path: as a stream asked once.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    sent = []
    real = cpu.BeamStream.partial
    monkeypatch.setattr(cpu.BeamStream, "partial",
                        lambda self, spell=None: sent.append(real(self, spell)) or sent[-1])
    decoder = decoders(lms)["lm+hotwords"]
    logits, lengths = utterances(3)
    logits = torch.cat([logits] * 4, 1)  # 240 frames
    lengths = lengths + 180
    stream = decoder.stream(batch=3)
    shown = 0
    for a in range(0, 240, 8):
        stream.feed(logits[:, a:a + 8], (lengths - a).clamp(0, 8))
        shown += sum(len(p.tokens) for p in stream.partial())
    once = decoder.stream(batch=3)
    once.feed(logits, lengths)  # (it commits at other frames: final may differ)
    assert [p[:4] for p in stream.partial()] == [p[:4] for p in once.partial()]
    tails = sum(got[3][-1] for got in sent if got is not None)
    assert shown > 200 and tails < shown / 4, (tails, shown)
    assert any(k > c for got in sent if got for k, c in zip(got[2], got[1], strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_partial_follows_the_best_beam_when_an_older_one_overtakes_it(lms, seed):
    # Noise alone (no word said clearly): the beam that ranks best after a chunk often
    # descends from one the last chunk ranked lower, so the words before the chunk
    # change. The kernel walks the new best path back only until it meets the last one
    # (the same slot at a frame): each partial must be that of a stream fed all of those
    # frames at once.
    need_c_kernel()
    decoder = decoders(lms)["lm+hotwords"]
    logits = torch.randn(2, 80, len(LETTERS), generator=torch.Generator().manual_seed(seed))
    logits = logits * 2.0
    stream = decoder.stream(batch=2)
    changed = 0
    before = None
    for a in range(0, 80, 8):
        stream.feed(logits[:, a:a + 8])
        got = stream.partial()
        once = decoder.stream(batch=2)
        once.feed(logits[:, :a + 8])  # (it commits at other frames: final may differ)
        assert [p[:4] for p in got] == [p[:4] for p in once.partial()], a
        if before is not None:
            changed += sum([(t, f) for t, f in zip(p.tokens, p.timesteps, strict=True) if f < a]
                           != list(zip(q.tokens, q.timesteps, strict=True))
                           for p, q in zip(got, before, strict=True))
        before = got
    assert changed > 0  # the case this is about happened


def test_a_restarted_example_is_walked_again_at_as_many_frames_as_before(search, lms):
    decoder = decoders(lms)["lm+hotwords"]
    first, _ = utterances(1, batch=1)
    second, _ = utterances(3, batch=1)
    stream = decoder.stream(batch=1)
    stream.feed(first[:, :40])
    before = stream.partial()[0]
    stream.reset(0)
    stream.feed(second[:, :40])  # as many frames as the first utterance had
    fresh = decoder.stream(batch=1)
    fresh.feed(second[:, :40])
    assert stream.partial() == fresh.partial() and stream.partial()[0] != before
