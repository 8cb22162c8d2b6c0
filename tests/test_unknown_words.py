"""Unknown words: what a word outside the language model's vocabulary costs
(``unk_score``, and ``partial_oov`` per 6 letters past the sixth), the search's rank
penalty of an unfinished word no known word begins with, and the defaults that come
with a language model. Both searches (C kernel and tensors) are held to each rule."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import ctc_decoder as D
import ctc_scorers.unknown_words
from ngram_lm import write_arpa
from optional_deps import both_searches, need_c_kernel, searches_agree

LETTERS = ["<b>", "|"] + [chr(c) for c in range(65, 91)]

# Four words at log10 -0.7 and an <unk> at -8 (a costly one: completing an unknown word
# costs 0.5 * 8 ln 10 = 9.2 at lm_weight 0.5, which is what made the runaway pay).
COSTLY_UNK_ARPA = """\\data\\
ngram 1=7
ngram 2=1

\\1-grams:
-99\t<s>\t-0.3
-1.0\t</s>
-8.0\t<unk>
-0.7\tHELLO\t-0.1
-0.7\tWORLD\t-0.1
-0.7\tTHERE\t-0.1
-0.7\tTHE\t-0.1

\\2-grams:
-0.3\tHELLO WORLD

\\end\\
"""

RUNAWAY = "QUAKING|HELLO|WORLD|THERE|HELLO|WORLD|THE|WORLD|HELLO|THERE|THE|HELLO|WORLD"


@pytest.fixture(scope="module")
def costly_unk(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "costly_unk.arpa"
    path.write_text(COSTLY_UNK_ARPA)
    return str(path)


def blurred(text, near="ES", other=-6.0, blank=2.0, gap=0.05):
    """Logits ``(1, 3 len(text), C)``: each character for 2 frames, then a blank frame;
    the blank is likely throughout (logit ``blank``), and at every delimiter frame two
    letters tie with it nearly (``gap`` and ``2 gap`` below): three near-tied tokens."""
    frames = [c for ch in text for c in (ch, ch, "<b>")]
    x = torch.full((len(frames), len(LETTERS)), other)
    x[:, 0] = blank
    for t, ch in enumerate(frames):
        x[t, LETTERS.index(ch)] = 4.0
        if ch == "|":
            for j, letter in enumerate(near):
                x[t, LETTERS.index(letter)] = 4.0 - gap * (j + 1)
    return x[None]


def test_the_57_letter_runaway_is_gone_at_default_settings(costly_unk, monkeypatch):
    """An unknown word first, then known ones, each delimiter nearly tied with two
    letters, and a costly <unk>. The old rule (a flat partial_oov of -10 that only
    ranked, nothing for an unknown word) never completed the unknown word: replacing
    each delimiter by a letter costs 0.05, completing the word 9.2, so it ran on
    through every word to the end, a 75-letter word (57 in the utterance that showed
    it). The defaults decode the text, on both searches, and so does the search
    without pruning at beam 1000: the objective itself now charges the long word."""
    logits = blurred(RUNAWAY)
    want = RUNAWAY.replace("|", " ")

    def decode(**options):
        decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lm_weight=0.5, **options)
        return both_searches(monkeypatch, lambda: decoder(logits)[0][0])

    with monkeypatch.context() as patch:  # the old rule: flat, ranking only
        patch.setattr(ctc_scorers.unknown_words, "PARTIAL_OOV_CHARS", 10 ** 9)
        old = decode(unk_score=0.0, partial_oov=-10.0, token_min_logp=None,
                     beam_threshold=None)
    for hyp in old:
        assert max(len(w) for w in hyp.words) == 75 and hyp.words[0].startswith("QUAKINGE")
        assert hyp.unk_score == 0.0
    for hyp in decode() + decode(beam_size=1000, token_min_logp=None, beam_threshold=None):
        assert hyp.text == want
        assert hyp.unk_score == pytest.approx(-6.0 - 15.0 * (7 / 6 - 1), abs=1e-12)
    # The runaway scores lower than the text now (it scored higher before).
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lm_weight=0.5)
    assert decoder.unknown_cost([old[0].words[0]]) == pytest.approx(-6.0 - 15.0 * (75 / 6 - 1))


def test_score_is_exactly_the_stated_sum(costly_unk, monkeypatch):
    """float64, both searches: ``score`` is ``acoustic + lm_weight lm + word_score words
    + unk_score`` to 1e-9, and ``unk_score`` is what the rule says for the words."""
    torch.manual_seed(0)
    logits = blurred("HELLO|ZYX|WORLD|BRISTLINGLY|THE", blank=-4.0).double()
    logits = logits + 0.5 * torch.randn_like(logits)
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lm_weight=0.7, word_score=0.4,
                                     beam_size=24, nbest=8, unk_score=-4.5,
                                     partial_oov=-20.0)
    for found in both_searches(monkeypatch, lambda: decoder(logits)[0]):
        assert len(found) == 8
        lengths = set()
        for h in found:
            oov = [w for w in h.words if w not in ("HELLO", "WORLD", "THERE", "THE")]
            lengths.update(len(w) for w in oov)
            assert h.unk_score == pytest.approx(
                sum(-4.5 - 20.0 * max(0.0, len(w) / 6 - 1) for w in oov), abs=1e-12)
            stated = (h.acoustic_score + 0.7 * h.lm_score + 0.4 * len(h.words)
                      + h.unk_score)
            assert h.score == pytest.approx(stated, abs=1e-9)
        assert min(lengths) <= 6 < max(lengths)  # both parts of the rule are exercised


def test_a_short_unknown_word_keeps_unk_score_only(costly_unk, monkeypatch):
    """The flat part of the rank penalty (-15 for a word of up to 6 letters) leaves the
    score when the word completes: ZYX costs unk_score and the LM's <unk>, no more."""
    logits = blurred("HELLO|ZYX", blank=-6.0)
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lm_weight=0.5)
    for h in both_searches(monkeypatch, lambda: decoder(logits)[0][0]):
        assert h.text == "HELLO ZYX"
        assert h.unk_score == -6.0
        assert h.score == pytest.approx(h.acoustic_score + 0.5 * h.lm_score - 6.0, abs=1e-4)


def test_hotwords_are_not_unknown(costly_unk, monkeypatch):
    logits = blurred("HELLO|ZYX", blank=-6.0)
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lm_weight=0.5, hotwords=["ZYX"],
                                     hotword_weight=1.0)
    for h in both_searches(monkeypatch, lambda: decoder(logits)[0][0]):
        assert h.text == "HELLO ZYX" and h.unk_score == 0.0
        assert h.score == pytest.approx(h.acoustic_score + 0.5 * h.lm_score + 1.0, abs=1e-4)


def test_no_lm_no_unknown_words_and_the_exact_search(monkeypatch):
    logits = blurred("QUAKING|HELLO", blank=0.0)
    decoder = D.CtcBeamSearchDecoder(LETTERS, beam_size=8)
    assert decoder.token_min_logp is None and decoder.beam_threshold is None
    for h in both_searches(monkeypatch, lambda: decoder(logits)[0][0]):
        assert h.unk_score == 0.0 and h.score == h.acoustic_score


def test_auto_pruning_with_an_lm(costly_unk):
    """-5, and 10 beyond what completing an unknown word costs: unk_score and the LM's
    <unk> (log10 -8 here) at lm_weight."""
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk)
    assert decoder.token_min_logp == -5.0
    assert decoder.beam_threshold == pytest.approx(10 + 6 + 0.5 * 8 * math.log(10))
    assert (decoder.unk_score, decoder.partial_oov) == (-6.0, -15.0)
    wider = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, unk_score=-12.5, lm_weight=1.0)
    assert wider.beam_threshold == pytest.approx(10 + 12.5 + 8 * math.log(10))
    positive = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, unk_score=-1.0, lm_weight=-1.0)
    assert positive.beam_threshold == 10.0  # a completion that gains: nothing to widen by
    exact = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, token_min_logp=None,
                                   beam_threshold=None)
    assert exact.token_min_logp is None and exact.beam_threshold is None


def test_unk_score_errors(costly_unk):
    with pytest.warns(UserWarning, match=r"unk_score=2\.0 is positive"):
        D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, unk_score=2.0)
    for bad in (math.nan, math.inf, "-6", None):
        with pytest.raises(ValueError, match="unk_score must be a finite number"):
            D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, unk_score=bad)
    with pytest.raises(ValueError, match="token_min_logp must be a finite number, None or "
                                         "'auto', got 'automatic'"):
        D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, token_min_logp="automatic")
    with pytest.raises(ValueError, match="beam_threshold is how far below the best a prefix may score: it must be >= 0"):
        D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, beam_threshold=-1.0)


# ------------------------------------------------------------------------ lexicons
def test_a_lexicon_forbids_other_words_or_charges_them(costly_unk, monkeypatch):
    """"HELLO|WURLD" with U just above O: no LM, a lexicon of HELLO and WORLD. With
    unk_score=-inf only lexicon words are decoded (flashlight's LexiconDecoder), every
    prefix that begins none leaves the beam at once; with a finite one (and no rank
    penalty) WURLD pays it, and the lexicon's spelling wins once that is more than the
    0.1 nats between them."""
    logits = blurred("HELLO|WURLD", blank=-6.0)
    logits[0, 21:23, LETTERS.index("O")] = 3.9  # the U frames: O 0.1 behind
    plain = D.CtcBeamSearchDecoder(LETTERS, beam_size=16)
    assert plain(logits)[0][0].text == "HELLO WURLD"
    lexicon = ["HELLO", "WORLD"]
    only = D.CtcBeamSearchDecoder(LETTERS, beam_size=16, lexicon=lexicon, unk_score=-math.inf,
                                  nbest=3)
    for found in both_searches(monkeypatch, lambda: only(logits)[0]):
        assert [h.text for h in found] == ["HELLO WORLD", "HELLO", "WORLD"][:len(found)]
        assert all(set(h.words) <= set(lexicon) for h in found)
        assert found[0].unk_score == 0.0 and found[0].score == found[0].acoustic_score
    charged = D.CtcBeamSearchDecoder(LETTERS, beam_size=16, lexicon=lexicon, unk_score=-0.5,
                                     partial_oov=0.0)
    for h in both_searches(monkeypatch, lambda: charged(logits)[0][0]):
        assert h.text == "HELLO WORLD"
    cheap = D.CtcBeamSearchDecoder(LETTERS, beam_size=16, lexicon=lexicon, unk_score=-0.05,
                                   partial_oov=0.0)
    for h in both_searches(monkeypatch, lambda: cheap(logits)[0][0]):
        assert h.text == "HELLO WURLD" and h.unk_score == -0.05


def test_a_lexicon_beside_the_lm(costly_unk, monkeypatch, tmp_path):
    """lexicon='lm' is the LM's words; a lexicon word the LM lacks gets its <unk>
    probability and no unk_score; a lexicon file's first column is its words."""
    lm_words = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lexicon="lm")
    assert sorted(lm_words.lexicon) == ["HELLO", "THE", "THERE", "WORLD"]
    logits = blurred("HELLO|ZYX", blank=-6.0)
    path = tmp_path / "lexicon.txt"
    path.write_text("HELLO H E L L O |\nZYX Z Y X |\n\n")
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lexicon=path,
                                     unk_score=-math.inf)
    assert decoder.lexicon == ["HELLO", "ZYX"]
    # The auto pruning with only lexicon words: no threshold (see the next test).
    assert decoder.beam_threshold is None and decoder.token_min_logp == -5.0
    for h in both_searches(monkeypatch, lambda: decoder(logits)[0][0]):
        assert h.text == "HELLO ZYX" and h.unk_score == 0.0
        assert h.lm_score == pytest.approx(math.log(10) * (-0.7 - 0.3 - 8.0 - 0.1 - 1.0),
                                           abs=1e-5)
    only_lm = D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, lexicon="lm",
                                     unk_score=-math.inf)
    for h in both_searches(monkeypatch, lambda: only_lm(logits)[0][0]):
        assert h.text == "HELLO"


def test_no_hypothesis_ends_in_a_lexicon_word(monkeypatch):
    """Only lexicon words, and a beam of one that can only hold "HEL": no hypothesis
    can end, and the example's list is empty (both searches), not a forbidden word.
    At beam 32 the search keeps HELLO, its last two letters spelled where the frames
    hold none."""
    logits = blurred("HEL", blank=-6.0)
    for beam, want in ((1, []), (32, ["HELLO"])):
        decoder = D.CtcBeamSearchDecoder(LETTERS, lexicon=["HELLO"], unk_score=-math.inf,
                                         beam_size=beam)
        for found in both_searches(monkeypatch, lambda decoder=decoder: decoder(logits)[0]):
            assert [h.text for h in found] == want


def test_lexicon_errors(costly_unk, tmp_path):
    with pytest.raises(ValueError, match="lexicon word 'HELLO1' cannot be spelled"):
        D.CtcBeamSearchDecoder(LETTERS, lexicon=["HELLO", "HELLO1"])
    pieces = ["<b>", "\u2581he", "llo", "\u2581wor", "ld"]
    D.CtcBeamSearchDecoder(pieces, word_delimiter="\u2581", lexicon=["hello", "world"])
    with pytest.raises(ValueError, match="lexicon word 'llohe' cannot be spelled"):
        D.CtcBeamSearchDecoder(pieces, word_delimiter="\u2581", lexicon=["hello", "llohe"])
    with pytest.raises(ValueError, match="lexicon word '<b>' cannot be spelled"):
        D.CtcBeamSearchDecoder(LETTERS, lexicon=["<b>"])  # the blank spells nothing
    with pytest.raises(ValueError, match="the lexicon is empty"):
        D.CtcBeamSearchDecoder(LETTERS, lexicon=[])
    with pytest.raises(ValueError, match="without spaces, got 'HELLO WORLD'"):
        D.CtcBeamSearchDecoder(LETTERS, lexicon=["HELLO WORLD"])
    with pytest.raises(ValueError, match="lexicon='lm' takes the language model's words"):
        D.CtcBeamSearchDecoder(LETTERS, lexicon="lm")
    with pytest.raises(ValueError, match="is not a file"):
        D.CtcBeamSearchDecoder(LETTERS, lexicon=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="unk_score=-inf allows only known words"):
        D.CtcBeamSearchDecoder(LETTERS, unk_score=-math.inf)
    with pytest.raises(ValueError, match="partial_oov must be a finite number, got -inf"):
        D.CtcBeamSearchDecoder(LETTERS, lm=costly_unk, partial_oov=-math.inf)


SMALL = ["<pad>", "|", "H", "E", "L", "O", "W", "R", "D", "U"]


@pytest.fixture(scope="module")
def small_lm(tmp_path_factory):
    corpus = ["HELLO WORLD", "HELLO THERE WORLD", "THE WORLD", "HELLO", "WORLD HELLO"]
    return write_arpa(corpus, tmp_path_factory.mktemp("lm") / "small.arpa", order=2)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.integers(1, 10), nbest=st.integers(1, 3),
       with_lm=st.booleans(), lexicon=st.sampled_from([None, "lm", ("HELLO", "HE", "DOUR"),
                                                        ("LOW", "OWL", "ROW", "RULE")]),
       unk_score=st.sampled_from([-math.inf, -3.0, 0.0]),
       partial_oov=st.sampled_from([0.0, -5.0, -15.0]), prune=st.booleans(),
       double=st.booleans())
def test_both_searches_agree_on_unknown_words_and_lexicons(small_lm, seed, beam, nbest,
                                                           with_lm, lexicon, unk_score,
                                                           partial_oov, prune, double):
    """The C kernel and the tensor search: same hypotheses and scores with a lexicon
    (with and without an LM, unknown words forbidden or charged), unk_score and
    partial_oov, pruning on and off, float32 and float64."""
    need_c_kernel()
    if (lexicon == "lm" and not with_lm) or (unk_score == -math.inf and lexicon is None
                                             and not with_lm):
        return  # refused (tested in test_lexicon_errors)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 24, len(SMALL), generator=g)
    top = torch.randint(0, len(SMALL), (3, 24), generator=g)
    top = torch.where(torch.rand(3, 24, generator=g) < 0.5, 0, top)
    logits = logits + 4.0 * torch.nn.functional.one_hot(top, len(SMALL))
    if double:
        logits = logits.double()
    lengths = torch.tensor([24, 15, 0])
    decoder = D.CtcBeamSearchDecoder(
        SMALL, lm=small_lm if with_lm else None, lexicon=lexicon, unk_score=unk_score,
        partial_oov=partial_oov, beam_size=beam, nbest=min(nbest, beam),
        token_min_logp=-6.0 if prune else None, beam_threshold=8.0 if prune else None)
    for got in searches_agree(decoder, logits, lengths):
        if unk_score == -math.inf:  # nothing outside the known words, ever
            known = set(decoder._known)
            for tokens, *_ in got:
                assert set(decoder.split_words(tokens)[0]) <= known
