"""A token-level n-gram LM in the beam search: an ARPA file over the decoder's tokens
(characters here, ``|`` between words), scored at every token appended and ``</s>`` at
the end, alone or beside the word LM. Its part of the score is reported
(``Hypothesis.token_lm_score``), equals KenLM on the same file, and both searches (C
kernel and tensors) agree."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import ctc_decoder as D
from ngram_lm import NgramLM, write_arpa
from optional_deps import both_searches, need_c_kernel, need_module, searches_agree

LETTERS = ["<pad>", "|", "H", "E", "L", "O", "W", "R", "D", "U", "T"]
CORPUS = ["HELLO WORLD", "HELLO THERE WORLD", "THE WORLD", "HELLO", "WORLD HELLO"]


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    """A character 4-gram over the corpus, ``|`` between words (write_arpa: interpolated
    absolute discounting)."""
    folder = tmp_path_factory.mktemp("lm")
    return write_arpa([list(s.replace(" ", "|")) for s in CORPUS], folder / "chars.arpa",
                      order=4)


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    return write_arpa(CORPUS, tmp_path_factory.mktemp("lm") / "words.arpa", order=2)


def spell(text, near=None, frames_per=2):
    """Logits: each character for ``frames_per`` frames, then a blank; ``near`` =
    {character position: letter 0.1 nats behind}."""
    frames, rivals = [], {}
    for i, ch in enumerate(text):
        for _ in range(frames_per):
            if near and i in near:
                rivals[len(frames)] = near[i]
            frames.append(LETTERS.index(ch))
        frames.append(0)
    x = torch.full((1, len(frames), len(LETTERS)), -5.0)
    x[0, torch.arange(len(frames)), torch.tensor(frames)] = 4.0
    for t, letter in rivals.items():
        x[0, t, LETTERS.index(letter)] = 4.1  # the rival leads by 0.1
    return x


def kenlm_tokens(path, tokens):
    kenlm = need_module("kenlm", "test")
    return kenlm.Model(str(path)).score(" ".join(tokens), bos=True, eos=True) * math.log(10)


def test_the_token_lm_turns_a_near_tie(char_lm, monkeypatch):
    """"HELLO|WORLD" where U leads O by 0.1 in WORLD: alone, the search reads WURLD; the
    character model, which never saw "WU", turns it back, without a word LM."""
    logits = spell("HELLO|WORLD", near={7: "U"})
    plain = D.CtcBeamSearchDecoder(LETTERS, beam_size=16)
    assert plain(logits)[0][0].text == "HELLO WURLD"
    decoder = D.CtcBeamSearchDecoder(LETTERS, beam_size=16, token_lm=char_lm,
                                     token_lm_weight=0.5)
    for h in both_searches(monkeypatch, lambda: decoder(logits)[0][0]):
        assert h.text == "HELLO WORLD"
        chars = [LETTERS[t] for t in h.tokens]
        assert h.token_lm_score == pytest.approx(kenlm_tokens(char_lm, chars), abs=1e-4)
        assert h.score == pytest.approx(h.acoustic_score + 0.5 * h.token_lm_score, abs=1e-4)


def test_score_is_the_stated_sum_with_both_lms(char_lm, word_lm, monkeypatch):
    """float64, both searches, an n-best of 6: score = acoustic + lm_weight lm +
    word_score words + unk_score + token_lm_weight token_lm to 1e-9; lm_score and
    token_lm_score are KenLM's on the words and on the tokens."""
    g = torch.Generator().manual_seed(5)
    logits = (spell("HELLO|THERE|WURLD") + 0.7 * torch.randn(1, 51, len(LETTERS),
                                                               generator=g)).double()
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=word_lm, lm_weight=0.6, word_score=0.3,
                                     token_lm=char_lm, token_lm_weight=0.4, beam_size=16,
                                     nbest=6, token_min_logp=None, beam_threshold=None)
    for found in both_searches(monkeypatch, lambda: decoder(logits)[0]):
        assert len(found) == 6
        for h in found:
            chars = [LETTERS[t] for t in h.tokens]
            assert h.token_lm_score == pytest.approx(kenlm_tokens(char_lm, chars), abs=1e-4)
            assert h.lm_score == pytest.approx(kenlm_tokens(word_lm, h.words), abs=1e-4)
            stated = (h.acoustic_score + 0.6 * h.lm_score + 0.3 * len(h.words) + h.unk_score
                      + 0.4 * h.token_lm_score)
            assert h.score == pytest.approx(stated, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.integers(1, 10), nbest=st.integers(1, 3),
       with_word_lm=st.booleans(), token_order=st.sampled_from([1, 2, 4]),
       weight=st.sampled_from([0.0, 0.3, 1.5]), prune=st.booleans(), double=st.booleans(),
       blank=st.sampled_from([0, 10]))
def test_both_searches_agree_with_a_token_lm(tmp_path_factory, word_lm, seed, beam, nbest,
                                             with_word_lm, token_order, weight, prune,
                                             double, blank):
    need_c_kernel()
    folder = tmp_path_factory.getbasetemp()
    path = folder / f"chars{token_order}.arpa"
    if not path.exists():
        write_arpa([list(s.replace(" ", "|")) for s in CORPUS], path, order=token_order)
    tokens = list(LETTERS)
    if blank:  # the blank ("<pad>") last, "T" first
        tokens[0], tokens[blank] = tokens[blank], tokens[0]
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 22, len(tokens), generator=g)
    top = torch.randint(0, len(tokens), (3, 22), generator=g)
    top = torch.where(torch.rand(3, 22, generator=g) < 0.5, blank, top)
    logits = logits + 4.0 * torch.nn.functional.one_hot(top, len(tokens))
    if double:
        logits = logits.double()
    lengths = torch.tensor([22, 13, 0])
    decoder = D.CtcBeamSearchDecoder(
        tokens, blank=blank, lm=word_lm if with_word_lm else None, token_lm=str(path),
        token_lm_weight=weight, beam_size=beam, nbest=min(nbest, beam),
        token_min_logp=-6.0 if prune else None, beam_threshold=8.0 if prune else None)
    searches_agree(decoder, logits, lengths)


def test_token_lm_errors(word_lm, char_lm):
    with pytest.raises(ValueError, match=r"the token LM's vocabulary is not the decoder's "
                                         r"tokens: 4 of its words are not tokens"):
        D.CtcBeamSearchDecoder(LETTERS, token_lm=word_lm)  # a word LM by mistake
    for bad in (-0.5, math.inf, math.nan, "1"):
        with pytest.raises(ValueError, match="token_lm_weight must be a finite number >= 0"):
            D.CtcBeamSearchDecoder(LETTERS, token_lm=char_lm, token_lm_weight=bad)
    with pytest.raises(TypeError, match="token_lm must be a path to an ARPA file or an "
                                        "NgramLM"):
        D.CtcBeamSearchDecoder(LETTERS, token_lm=3)
    # Tokens the LM lacks are its <unk>: allowed (special tokens, a larger vocabulary).
    decoder = D.CtcBeamSearchDecoder(LETTERS + ["Z"], token_lm=NgramLM(char_lm))
    assert decoder(torch.zeros(1, 3, len(LETTERS) + 1))[0]
