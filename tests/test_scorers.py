"""The prefix scorer interface (ctc_scorers): a scorer written against it alone, in
a file of its own, is called by the search at the events it names (a word completed,
a token appended, the end), beside the built-in ones; and the decoders' input checks
are the port's own."""
import math

import pytest
import torch

import ctc_decoder as D
import seq_loss_util as S
from ctc_scorers import (HotwordScorer, TokenLMScorer, TokenScorer, UnknownWordScorer,
                         WordBonusScorer, WordLMScorer, WordScorer)
from ngram_lm import write_arpa
from optional_deps import need_c_kernel

LETTERS = ["<b>", "|"] + [chr(c) for c in range(65, 91)]
TEXTS = ["HELLO WORLD", "HELLO THERE", "THE WORLD", "WORLD HELLO THERE"]


class LongWordBonus(WordScorer):
    """``weight`` per completed word of at least ``chars`` characters."""

    field = "long_words"

    def __init__(self, weight, chars):
        self.weight, self.chars = weight, chars

    def close(self, state, word):
        add = torch.where(word.length >= self.chars, self.weight, 0.0)
        return add, {"total": state["total"] + add.to(state["total"].dtype)}


class TokenBonus(TokenScorer):
    """``weight`` per token appended."""

    def __init__(self, weight):
        self.weight = weight

    def step(self, state, tokens):
        return torch.full((*state["total"].shape, tokens.shape[1]), self.weight,
                          dtype=state["total"].dtype)

    def append(self, state, token):
        return {"total": state["total"] + self.weight}


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "words.arpa"
    write_arpa(TEXTS, path, order=2)
    return str(path)


def random_logits(seed, frames=30):
    generator = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(1, frames, len(LETTERS), generator=generator,
                             dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
def test_a_new_scorer_is_scored_where_its_events_happen(word_lm, seed, monkeypatch):
    """Each hypothesis's score is the built-in parts plus 2 per word of 5 letters or
    more (closed at a delimiter or at the end) plus the bonus per token (float64, to
    1e-9), and the long words' total is reported; the bonus changes what is found. The
    C kernel has no implementation of them, so the tensor search runs even where the
    kernel is built, and the NaN in the padded frames never reaches it."""
    logits = random_logits(seed).repeat(2, 1, 1)
    logits[1, 20:] = math.nan
    lengths = torch.tensor([30, 20])
    options = dict(lm=word_lm, lm_weight=0.7, word_score=0.3, beam_size=12, nbest=6,
                   distinct_texts=False)
    decoder = D.CtcBeamSearchDecoder(LETTERS, scorers=[LongWordBonus(2.0, 5),
                                                       TokenBonus(0.25)], **options)
    assert "scorers=['LongWordBonus', 'TokenBonus']" in repr(decoder)
    assert decoder._words_on(torch.device("cpu")).arrays() is None
    ran = []
    tensors = D._search_tensors
    monkeypatch.setattr(D, "_search_tensors", lambda *a: ran.append(1) or tensors(*a))
    found = decoder(logits, lengths)
    assert ran and [len(f) for f in found] == [6, 6]
    for h in found[0] + found[1]:
        long_words = sum(len(w) >= 5 for w in h.words)
        assert h.scores == {"long_words": 2.0 * long_words}
        stated = (h.acoustic_score + 0.7 * h.lm_score + 0.3 * len(h.words) + h.unk_score
                  + 2.0 * long_words + 0.25 * len(h.tokens))
        assert h.score == pytest.approx(stated, abs=1e-9)
        assert math.isfinite(h.score)
    # The shorter example decodes as it does alone.
    alone = decoder(logits[1:, :20])[0]
    assert [h.tokens for h in alone] == [h.tokens for h in found[1]]
    plain = D.CtcBeamSearchDecoder(LETTERS, **options)(logits[:1])[0][0]
    generous = D.CtcBeamSearchDecoder(LETTERS, scorers=TokenBonus(6.0), **options)(
        logits[:1])[0][0]  # a token is worth more than most frames' odds against it
    assert len(generous.tokens) > len(plain.tokens)


def test_scorers_are_checked():
    with pytest.raises(TypeError, match="scorers must be ctc_scorers.WordScorer or "
                                        "TokenScorer instances, got str"):
        D.CtcBeamSearchDecoder(LETTERS, scorers=["lm"])
    twin = LongWordBonus(1.0, 3)
    for field in ("lm_score", "score", "long_words"):
        twin.field = field
        with pytest.raises(ValueError, match=f"reports as '{field}'"):
            D.CtcBeamSearchDecoder(LETTERS, scorers=[LongWordBonus(2.0, 5), twin])


def test_every_built_in_scorer_runs_on_the_c_kernel(word_lm, tmp_path):
    need_c_kernel()
    chars = tmp_path / "chars.arpa"
    write_arpa([" ".join(t.replace(" ", "|")) for t in TEXTS], chars, order=3)
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=word_lm, word_score=0.5, hotwords=["THERE"],
                                     token_lm=str(chars))
    words = decoder._words_on(torch.device("cpu"))
    assert [type(s) for s in words.scorers] == [WordLMScorer, WordBonusScorer, HotwordScorer,
                                                UnknownWordScorer, TokenLMScorer]
    assert words.arrays() is not None
    # None of them without options: the plain search.
    assert D.CtcBeamSearchDecoder(LETTERS)._words_on(torch.device("cpu")).scorers == []


@pytest.mark.parametrize("fault, length", [("past T", [5, 6]), ("negative", [5, -1])])
def test_the_decoders_checks_are_the_ports(fault, length):
    """One message for one mistake, whichever entry point it reaches: the decoders' and
    ctc_loss's come from the same check in seq_loss_util."""
    logits = torch.zeros(2, 5, 4)
    messages = set()
    calls = [lambda n: D.greedy_decode(logits, n), lambda n: D.ctc_beam_search(logits, n),
             lambda n: D.CtcBeamSearchDecoder(["-", "a", "b", "|"])(logits, n),
             lambda n: S.ctc_loss(torch.tensor([[0, 1, 0], [0, 2, 0]]), torch.tensor([3, 3]),
                                  logits, n)]
    for call in calls:
        with pytest.raises(ValueError) as caught:
            call(torch.tensor(length))
        messages.add(str(caught.value))
    assert len(messages) == 1, messages
    assert "example 1" in messages.pop()
