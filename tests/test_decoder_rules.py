"""ctc_decoder rules that random comparisons did not reach: a Hugging Face vocabulary
whose pad token (the blank) is not class 0, a hotword given as a string, hotword phrases
of three and four words counted once each, float64 scores exact where many paths are
close, overlapping hotwords at small beams (the C kernel's bound on a word's bonus),
and SentencePiece vocabularies larger than the beam's candidate list. Each rule runs on
both searches where both exist: the C kernel and the tensor search
(``SEQ_LOSS_UTIL_KERNEL=0``, read at call time)."""
import json
import types

import numpy as np
import pytest
import torch

import ctc_decoder as D
from ngram_lm import NgramLM, write_arpa
from optional_deps import HF, both_searches, need_c_kernel, require



def on_both(monkeypatch, decoder, logits, lengths=None):
    """``(C kernel's hypotheses, tensor search's)`` for one batch."""
    return both_searches(monkeypatch, lambda: decoder(logits, lengths))


def say(frames, tokens, rivals=None, high=8.0, low=-8.0):
    """Logits ``(1, T, C)``: frame t's token (a string of ``tokens``) at ``high``, the
    others at ``low``; ``rivals`` = {t: (token, margin)}: that token ``margin`` below."""
    logits = torch.full((1, len(frames), len(tokens)), low)
    for t, token in enumerate(frames):
        logits[0, t, tokens.index(token)] = high
    for t, (token, margin) in (rivals or {}).items():
        logits[0, t, tokens.index(token)] = high - margin
    return logits


def spelled(text, blank):
    """Frames for ``text``: each character (``|`` between words), then a blank."""
    return [f for ch in text for f in (ch, blank)]


def nll(log_probs, tokens, blank=0):
    """The exact CTC negative log-likelihood of ``tokens`` (one example, float64)."""
    if not tokens:
        return float(-log_probs[:, blank].sum())
    return float(torch.nn.functional.ctc_loss(
        log_probs[:, None], torch.tensor([tokens]), torch.tensor([log_probs.shape[0]]),
        torch.tensor([len(tokens)]), blank=blank, reduction="sum"))


# ------------------------------------------------ 1. from_hf: the pad token is the blank
def recipe_tokenizer(tmp_path):
    """A wav2vec2 CTC tokenizer as Hugging Face's fine-tuning recipe builds it: the
    characters first, then [UNK] and [PAD] appended, so the pad token is not class 0
    (class 0 is the word delimiter)."""
    require(HF, "hf")
    from transformers import Wav2Vec2CTCTokenizer

    vocab = {ch: i for i, ch in enumerate("|ABCD")}
    vocab["[UNK]"] = len(vocab)
    vocab["[PAD]"] = len(vocab)
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    return Wav2Vec2CTCTokenizer(str(path), unk_token="[UNK]", pad_token="[PAD]",
                                word_delimiter_token="|")


def test_from_hf_blank_is_the_pad_token_even_when_it_is_last(tmp_path, search):
    tokenizer = recipe_tokenizer(tmp_path)  # skips without transformers
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    assert tokenizer.pad_token_id == 6  # | A B C D [UNK] [PAD], then <s> </s> added
    # The pad class separates the repeated letters: only as the blank does "A [PAD] A"
    # read "AA"; class 0 (|) as the blank would drop every word break instead.
    frames = ["A", "A", "[PAD]", "A", "B", "|", "C", "[PAD]", "C", "D", "|", "|", "[PAD]",
              "B", "B"]
    processor = Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(),
                                  tokenizer=tokenizer)
    holders = [tokenizer, processor, types.SimpleNamespace(tokenizer=tokenizer)]
    for holder in holders:
        decoder = D.CtcBeamSearchDecoder.from_hf(holder, beam_size=8)
        assert decoder.blank == 6 and decoder.word_delimiter == "|"
        assert decoder.tokens == ["|", "A", "B", "C", "D", "[UNK]", "[PAD]", "<s>", "</s>"]
        best = decoder(say(frames, decoder.tokens))[0][0]
        assert best.text == "AAB CCD B"
        assert best.words == ["AAB", "CCD", "B"]
        assert best.tokens == [1, 1, 2, 0, 3, 3, 4, 0, 2]
        assert 6 not in best.tokens
        assert best.word_spans == [(0, 5), (6, 10), (13, 14)]
        assert tokenizer.decode(best.tokens, group_tokens=False) == "AAB CCD B"


# ------------------------------------------------ 2. a string is one hotword
V6 = ["<pad>", "|", "A", "B", "C", "D"]


def test_a_hotword_string_is_one_hotword_not_its_letters(search):
    # "A|B" scores 0.5 above "AB" acoustically. The hotword "AB" (+4) turns it to "AB";
    # read letter by letter, "A" and "B" would be two hotwords and "A B" would win by 8.
    logits = say(["A", "|", "B"], V6, rivals={1: ("<pad>", 0.5)})
    plain = D.CtcBeamSearchDecoder(V6, beam_size=8)(logits)[0][0]
    assert plain.text == "A B"
    as_string = D.CtcBeamSearchDecoder(V6, beam_size=8, hotwords="AB", hotword_weight=4.0)
    as_list = D.CtcBeamSearchDecoder(V6, beam_size=8, hotwords=["AB"], hotword_weight=4.0)
    assert as_string.hotwords == ["AB"]
    got, want = as_string(logits)[0][0], as_list(logits)[0][0]
    assert got.text == want.text == "AB"
    assert got.score == pytest.approx(got.acoustic_score + 4.0, abs=1e-5)
    assert got == want
    letters = D.CtcBeamSearchDecoder(V6, beam_size=8, hotwords=["A", "B"],
                                     hotword_weight=4.0)(logits)[0][0]
    assert letters.text == "A B"  # what the string must not mean
    assert letters.score == pytest.approx(letters.acoustic_score + 8.0, abs=1e-5)


# ------------------------------------------------ 3. phrases of three and four words
PHRASES = ["AB CD BA", "CD BA", "BA", "DC AB", "CD BA DC AB"]
# Bonuses per word end of "AB CD BA DC AB BA": AB 0, CD 0, BA 3 (BA, CD BA, AB CD BA),
# DC 0, AB 2 (DC AB, CD BA DC AB), BA 1 (BA; "AB BA" is no phrase).
PHRASE_TEXT, PHRASE_HITS = "AB|CD|BA|DC|AB|BA", 6


@pytest.fixture(scope="module")
def phrase_lm(tmp_path_factory):
    corpus = ["AB CD BA", "DC AB BA", "CD BA DC", "BA AB"]
    return write_arpa(corpus, tmp_path_factory.mktemp("lm") / "phrases.arpa", order=3)


@pytest.mark.parametrize("trailing", ["", "|"], ids=["ends-at-the-end", "ends-at-a-delimiter"])
@pytest.mark.parametrize("with_lm", [False, True], ids=["no-lm", "lm"])
def test_hotword_phrases_of_three_and_four_words_count_once_each(search, phrase_lm, trailing,
                                                                 with_lm):
    logits = say(spelled(PHRASE_TEXT + trailing, "<pad>"), V6)
    lm_weight, word_score, weight = 0.3, -0.5, 2.5
    decoder = D.CtcBeamSearchDecoder(V6, beam_size=8, nbest=1, hotwords=PHRASES,
                                     hotword_weight=weight, word_score=word_score,
                                     lm=phrase_lm if with_lm else None, lm_weight=lm_weight)
    best = decoder(logits)[0][0]
    assert best.words == ["AB", "CD", "BA", "DC", "AB", "BA"]
    if with_lm:
        assert best.lm_score == pytest.approx(NgramLM(phrase_lm).score_sentence(best.words),
                                              abs=1e-5)
    else:
        assert best.lm_score == 0.0
    bonus = best.score - best.acoustic_score - lm_weight * best.lm_score - word_score * 6
    assert bonus == pytest.approx(weight * PHRASE_HITS, abs=1e-4)
    # Each phrase alone: counted once where it completes, never for a part of it.
    for phrase, hits in [("AB CD BA", 1), ("CD BA DC AB", 1), ("BA DC AB BA", 1),
                         ("AB CD BA DC AB BA", 1), ("CD BA DC", 1), ("AB CD DC", 0),
                         ("BA", 2)]:
        alone = D.CtcBeamSearchDecoder(V6, beam_size=8, hotwords=[phrase],
                                       hotword_weight=weight)(logits)[0][0]
        assert alone.text == "AB CD BA DC AB BA"
        assert alone.score - alone.acoustic_score == pytest.approx(weight * hits, abs=1e-4), \
            phrase


# ------------------------------------------------ 4. float64 exact on close paths
@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["flat", "spread"])
def test_float64_scores_are_exact_where_paths_are_close(search, scale):
    """Over 3 classes and 7 frames a beam of 256 holds every prefix (255): each of the
    n best carries all its alignments, and its acoustic score is the float64 CTC
    log-likelihood to rounding. Flat logits (every path nearly as probable) make each
    log-sum-exp's correction term large, so its precision shows; spread ones make
    sums whose smaller term is 1e-8 to 1e-17 of the larger, which a shortcut must add
    unless they round away (e^-38 in float64, e^-18 only in float32)."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 7, 3, generator=g, dtype=torch.float64) * scale
    hyps = D.ctc_beam_search(logits, beam_size=256, nbest=12)
    worst32 = 0.0
    hyps32 = D.ctc_beam_search(logits.float(), beam_size=256, nbest=12)
    for b in range(4):
        lp = logits[b].log_softmax(-1)
        assert len(hyps[b]) == 12
        for h in hyps[b]:
            exact = -nll(lp, h.tokens)
            assert h.acoustic_score == pytest.approx(exact, rel=1e-12, abs=0)
        for h in hyps32[b]:
            exact = -nll(lp, h.tokens)
            worst32 = max(worst32, abs(h.acoustic_score - exact) / abs(exact))
        best = max(hyps[b], key=lambda h: h.acoustic_score)
        assert best is hyps[b][0]
    # The same comparison in float32 misses by far more: the bound above is not loose.
    assert worst32 > 1e-9


# ------------------------------------------------ 5. overlapping hotwords, small beams
@pytest.mark.parametrize("hotword_weight,word_score", [
    (3.0, 0.0), (4.0, -1.0), (1.5, 1.0), (-2.0, 0.0), (-1.0, 2.0), (-3.0, 1.0)],
    ids=["pos", "pos-penalty", "pos-bonus", "neg", "neg-bonus-2", "neg-bonus-1"])
def test_overlapping_hotwords_at_small_beams_both_searches_agree(monkeypatch, hotword_weight,
                                                                 word_score):
    """A word end adds at most word_score plus hotword_weight once per phrase length
    (here "AB" and "CD AB" both end at AB: twice the weight), and no hotword bonus when
    the weight is negative. The C kernel skips a word end whose rank plus that bound
    cannot beat the beam; a bound too low drops a word end that the tensor search,
    which bounds nothing, keeps, and at small beams that changes the result. Compared
    over 48 random inputs for each of three vocabularies (the blank and the delimiter
    in different places) at beams 1 to 3."""
    need_c_kernel()
    for vocab, blank, hotwords in [
            (V6, 0, ["AB", "CD AB"]),
            (["<pad>", "|", "A", "B", "C"], 0, ["A", "B A", "C B A", "AB"]),
            (["A", "B", "|", "C", "D", "<pad>"], 5, ["AB", "CD AB", "D", "C D"])]:
        g = torch.Generator().manual_seed(len(vocab) + blank)
        logits = torch.randn(48, 9, len(vocab), generator=g) * 2
        logits[:, :, vocab.index("|")] += 1.0  # more word ends
        lengths = torch.randint(1, 10, (48,), generator=g)
        for beam in (1, 2, 3):
            decoder = D.CtcBeamSearchDecoder(vocab, blank=blank, beam_size=beam, nbest=beam,
                                             hotwords=hotwords, hotword_weight=hotword_weight,
                                             word_score=word_score)
            compiled, tensors = on_both(monkeypatch, decoder, logits, lengths)
            for b in range(48):
                where = f"vocabulary {vocab}, beam {beam}, example {b}"
                assert [h.text for h in compiled[b]] == [h.text for h in tensors[b]], where
                assert [h.tokens for h in compiled[b]] == [h.tokens for h in tensors[b]], where
                np.testing.assert_allclose([h.score for h in compiled[b]],
                                           [h.score for h in tensors[b]], rtol=0, atol=1e-5,
                                           err_msg=where)


def test_negative_hotword_weight_with_a_word_score_known_case(monkeypatch):
    """The reproducer of a kernel bound that took hotword_weight * phrases as the most
    a word end adds beyond word_score even for a negative weight: a word that is no
    hotword adds word_score (2), more than the bound (2 - 1), and was skipped."""
    decoder = D.CtcBeamSearchDecoder(["<pad>", "|", "a", "b"], hotwords=["ab"],
                                     hotword_weight=-1.0, word_score=2.0, beam_size=2)
    logits = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(21)) * 2
    compiled, tensors = on_both(monkeypatch, decoder, logits)
    assert tensors[0][0].text == "b a"  # the tensor search bounds nothing
    assert tensors[0][0].score == pytest.approx(-0.25795, abs=1e-4)
    assert compiled[0][0].text == tensors[0][0].text
    assert compiled[0][0].score == pytest.approx(tensors[0][0].score, abs=1e-5)


# ------------------------------------------------ 6. SentencePiece beyond the candidates
SP = (["<blank>"]
      + ["\u2581" + w for w in ("the cat sat on mat a dog ran to it is in and of he she was "
                                "big red x y z").split()]
      + ["\u2581"]
      + "s ed ing er ly t a e o n r d h i m c g y".split())


def test_sentencepiece_vocabulary_larger_than_the_candidates(search):
    # 42 tokens, beam 2: each frame offers 3 candidates. Most tokens start a word (they
    # are the word boundaries); "s" continues one, and must stay a candidate.
    assert len(SP) == 42
    frames = ["\u2581cat", "\u2581cat", "s", "<blank>", "\u2581sat", "<blank>", "\u2581on",
              "\u2581the", "<blank>", "\u2581mat", "s", "s", "<blank>", "\u2581", "ing"]
    rivals = {2: ("\u2581the", 1.0), 7: ("\u2581he", 0.5), 10: ("ed", 1.5), 14: ("s", 0.7)}
    logits = say(frames, SP, rivals)
    decoder = D.CtcBeamSearchDecoder(SP, word_delimiter="\u2581", beam_size=2, nbest=2)
    best = decoder(logits)[0][0]
    assert best.text == "cats sat on the mats ing"
    assert [SP[t] for t in best.tokens] == ["\u2581cat", "s", "\u2581sat", "\u2581on",
                                            "\u2581the", "\u2581mat", "s", "\u2581", "ing"]
    assert best.timesteps == [0, 2, 4, 6, 7, 9, 10, 13, 14]
    # A word runs from its first token with characters to one past its last token.
    assert best.word_spans == [(0, 3), (4, 5), (6, 7), (7, 8), (9, 11), (14, 15)]


def brute_force_best(log_probs, blank):
    """The most probable label sequence and its exact ln p, by summing over all C^T
    frame paths."""
    frames, classes = log_probs.shape
    paths = np.stack(np.meshgrid(*[np.arange(classes)] * frames, indexing="ij"),
                     -1).reshape(-1, frames)
    scores = log_probs.numpy()[np.arange(frames), paths].sum(1)
    keep = np.concatenate([np.ones((len(paths), 1), bool), paths[:, 1:] != paths[:, :-1]], 1)
    keep &= paths != blank
    # One integer per label sequence: its labels (+1) as base-(C+1) digits.
    key = np.zeros(len(paths), dtype=np.int64)
    for t in range(frames):
        key = np.where(keep[:, t], key * (classes + 1) + paths[:, t] + 1, key)
    order = np.argsort(key, kind="stable")
    key, scores = key[order], scores[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    peak = np.maximum.reduceat(scores, starts)
    total = peak + np.log(np.add.reduceat(
        np.exp(scores - np.repeat(peak, np.diff(np.r_[starts, len(key)]))), starts))
    k = int(key[starts[total.argmax()]])
    tokens = []
    while k:
        tokens.append(k % (classes + 1) - 1)
        k //= classes + 1
    return tokens[::-1], float(total.max())


def test_sentencepiece_small_beam_finds_the_brute_force_best(search):
    """Tiny inputs, every frame path summed: the best label sequence. Each frame leans
    to one token (a word start or a continuation) over noise; at beam 2 (3 candidates
    of 41 per frame) the search must find that sequence, and its acoustic score is at
    most the exact one (a beam of 2 may drop alignments)."""
    g = torch.Generator().manual_seed(11)
    tops = [["\u2581cat", "s", "s", "\u2581red"], ["\u2581he", "\u2581", "ing", "ly"],
            ["\u2581big", "ed", "<blank>", "er"]]
    logits = torch.randn(len(tops), 4, len(SP), generator=g, dtype=torch.float64)
    for b, frames in enumerate(tops):
        for t, token in enumerate(frames):
            logits[b, t, SP.index(token)] += 4.0
    decoder = D.CtcBeamSearchDecoder(SP, word_delimiter="\u2581", beam_size=2)
    hyps = decoder(logits)
    texts = []
    for b in range(len(tops)):
        want, exact = brute_force_best(logits[b].log_softmax(-1), 0)
        best = hyps[b][0]
        assert best.tokens == want
        assert exact - 0.5 < best.acoustic_score <= exact + 1e-9
        texts.append(best.text)
    assert texts == ["cats red", "he ingly", "bigeder"]


def test_sentencepiece_larger_than_the_candidates_both_searches_agree(monkeypatch, tmp_path):
    need_c_kernel()
    lm = write_arpa(["the cat sat on the mat", "he ran to it", "she was big and red"],
                    tmp_path / "sp.arpa", order=2)
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 14, len(SP), generator=g) * 2.5
    lengths = torch.randint(4, 15, (32,), generator=g)
    for beam, options in [(2, {}), (3, dict(lm=lm, lm_weight=0.5, word_score=0.5,
                                            hotwords=["cats", "he ran"]))]:
        decoder = D.CtcBeamSearchDecoder(SP, word_delimiter="\u2581", beam_size=beam,
                                         nbest=2, **options)
        compiled, tensors = on_both(monkeypatch, decoder, logits, lengths)
        for b in range(32):
            assert [(h.text, h.tokens, h.word_spans) for h in compiled[b]] == \
                [(h.text, h.tokens, h.word_spans) for h in tensors[b]], (beam, b)
            np.testing.assert_allclose([h.score for h in compiled[b]],
                                       [h.score for h in tensors[b]], rtol=0, atol=1e-4)
            for h in compiled[b]:
                assert h.words == decoder.split_words(h.tokens)[0]
                assert "".join(SP[t] for t in h.tokens).replace("\u2581", " ").split() \
                    == h.words
        # The random inputs reach word starts and continuations alike.
        used = {SP[t] for hyps in compiled for h in hyps for t in h.tokens}
        assert len(used - {s for s in SP if s.startswith("\u2581")}) >= 5


# ------------------------------------------------ 7. n-best lists of distinct texts
def test_nbest_texts_are_distinct_and_the_best_spelling_stands_for_each(monkeypatch, tmp_path):
    """"AB BA" with a delimiter that may also lead or trail (0.3 nats behind the blank):
    the token sequences "AB|BA", "|AB|BA", "AB|BA|", "|AB|BA|" spell one text. By
    default the n-best holds it once, as its best spelling with that spelling's scores,
    and the next texts after it; ``distinct_texts=False`` returns the spellings, which
    fill the top four. Both searches, with and without an LM."""
    tokens = ["-", "|", "A", "B"]
    frames = ["-", "A", "-", "B", "-", "|", "-", "B", "-", "A", "-"]
    logits = say(frames, tokens, rivals={0: ("|", 0.3), 10: ("|", 0.3), 3: ("A", 2.0)})
    arpa = write_arpa(["AB BA", "BA AB", "AB"], tmp_path / "ab.arpa", order=2)
    for lm in (None, arpa):
        options = dict(lm=lm, beam_size=16, nbest=4)
        every = D.CtcBeamSearchDecoder(tokens, distinct_texts=False, **options)
        distinct = D.CtcBeamSearchDecoder(tokens, **options)
        for spellings, texts in zip(on_both(monkeypatch, every, logits),
                                    on_both(monkeypatch, distinct, logits), strict=True):
            spellings, texts = spellings[0], texts[0]
            assert [h.text for h in spellings] == ["AB BA"] * 4
            assert sorted("".join(tokens[t] for t in h.tokens) for h in spellings) == sorted(
                ["AB|BA", "|AB|BA", "AB|BA|", "|AB|BA|"])
            assert texts[0] == spellings[0]  # the best spelling, its scores unchanged
            assert len(texts) == 4 and len({h.text for h in texts}) == 4
            assert [h.score for h in texts] == sorted((h.score for h in texts), reverse=True)
            assert texts[1].text == "AA BA"  # the next text: the rival A at frame 3
    with pytest.raises(TypeError, match="distinct_texts must be True or False"):
        D.CtcBeamSearchDecoder(tokens, distinct_texts=1)
