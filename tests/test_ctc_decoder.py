"""ctc_decoder: the prefix beam search is exact where its beam holds every prefix
(brute force over all label sequences, float64 CTC), batched equals one at a time,
padded frames are never read; words, a language model (scores equal to kenlm's),
hotwords, timestamps, Hugging Face vocabularies and the errors."""
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import ctc_decoder as D
import seq_loss_util as S
from ngram_lm import NgramLM, write_arpa
from optional_deps import HF, need_c_kernel, need_module, require

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def nll(log_probs, tokens, blank):
    """Exact CTC negative log-likelihood of ``tokens`` for one example, float64."""
    if not tokens:
        return float(-log_probs[:, blank].sum())
    return float(torch.nn.functional.ctc_loss(
        log_probs[:, None], torch.tensor([tokens]), torch.tensor([log_probs.shape[0]]),
        torch.tensor([len(tokens)]), blank=blank, reduction="sum"))


def brute_force(log_probs, blank, classes):
    """Every label sequence that fits the frames, best first: ``[(ln p, tokens)]``."""
    labels = [c for c in range(classes) if c != blank]
    sequences = [()] + [s for n in range(1, log_probs.shape[0] + 1)
                        for s in itertools.product(labels, repeat=n)]
    scored = [(-nll(log_probs, list(s), blank), s) for s in sequences]
    return sorted([x for x in scored if x[0] > -math.inf], key=lambda x: -x[0])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 6), classes=st.integers(2, 3),
       data=st.data())
def test_exact_nbest_equals_brute_force(seed, frames, classes, data):
    blank = data.draw(st.integers(0, classes - 1))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, frames, classes, generator=g, dtype=torch.float64) * 2
    lengths = torch.tensor([frames, data.draw(st.integers(0, frames))])
    hyps = D.ctc_beam_search(logits, lengths, blank=blank, beam_size=256, nbest=6)
    for b in range(2):
        want = brute_force(logits[b, :lengths[b]].log_softmax(-1), blank, classes)[:6]
        got = [(h.acoustic_score, tuple(h.tokens)) for h in hyps[b]]
        assert len(got) == len(want)
        for (score, tokens), (true_score, true_tokens) in zip(got, want, strict=True):
            assert score == pytest.approx(true_score, abs=1e-10)  # float64 throughout
            # Ties aside (measure zero with random logits), the same sequences in order.
            assert tokens == true_tokens
        assert all(h.score == h.acoustic_score and h.lm_score == 0 for h in hyps[b])


def peaky(seed, batch=4, frames=60, classes=12, blank=0, sharp=6.0):
    """Model-like outputs: one class stands out per frame, the blank on most frames."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, classes, generator=g)
    top = torch.randint(0, classes, (batch, frames), generator=g)
    top = torch.where(torch.rand(batch, frames, generator=g) < 0.6, blank, top)
    return logits + sharp * torch.nn.functional.one_hot(top, classes)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("blank", [0, 5, 11])
def test_best_acoustic_score_is_minus_the_ctc_loss(device, blank):
    logits = peaky(1, blank=blank, sharp=10.0).to(device)
    lengths = torch.tensor([60, 41, 7, 0], device=device)
    wide = D.ctc_beam_search(logits, lengths, blank=blank, beam_size=256, nbest=3)
    narrow = D.ctc_beam_search(logits, lengths, blank=blank, beam_size=8, nbest=3)
    for b in range(4):
        lp = logits[b, :lengths[b]].double().cpu().log_softmax(-1)
        assert len(wide[b]) == len(narrow[b]) == (3 if lengths[b] else 1)
        # A beam wide enough to keep every prefix of the best hypothesis, at every
        # frame, carries all of its alignments: its score is the exact CTC one.
        best = wide[b][0]
        assert best.acoustic_score == pytest.approx(-nll(lp, best.tokens, blank), abs=2e-4)
        # A narrow beam drops prefixes, and with them alignments: the score it carries
        # is then below the exact one, never above.
        for h in wide[b] + narrow[b]:
            assert h.acoustic_score <= -nll(lp, h.tokens, blank) + 2e-4
            assert blank not in h.tokens
        assert narrow[b][0].tokens == best.tokens
        assert [h.score for h in wide[b]] == sorted([h.score for h in wide[b]], reverse=True)
    assert [h.tokens for h in wide[3]] == [[]]  # no frames: the empty sequence, p = 1
    assert wide[3][0].acoustic_score == 0.0


def test_batched_equals_one_at_a_time_and_padding_is_never_read():
    logits = peaky(2)
    lengths = torch.tensor([60, 33, 59, 12])
    batched = D.ctc_beam_search(logits, lengths, beam_size=10, nbest=4)
    poisoned = logits.clone()
    for b, n in enumerate(lengths.tolist()):
        poisoned[b, n:] = math.nan
    assert D.ctc_beam_search(poisoned, lengths, beam_size=10, nbest=4) == batched
    for b, n in enumerate(lengths.tolist()):
        alone = D.ctc_beam_search(logits[b:b + 1, :n], beam_size=10, nbest=4)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[b]]
        assert [h.timesteps for h in alone] == [h.timesteps for h in batched[b]]
        np.testing.assert_allclose([h.score for h in alone], [h.score for h in batched[b]],
                                   rtol=0, atol=1e-5)


def test_float64_decodes_in_float64():
    logits = peaky(3, batch=1, frames=30, sharp=10.0).double()
    best = D.ctc_beam_search(logits, beam_size=256)[0][0]
    lp = logits[0].log_softmax(-1)
    assert best.acoustic_score == pytest.approx(-nll(lp, best.tokens, 0), abs=1e-11)


def test_timesteps_are_where_each_token_starts():
    # Frames: - a a - b - - b c c -  (a blank between the b's: two b's)
    path = [0, 1, 1, 0, 2, 0, 0, 2, 3, 3, 0]
    logits = torch.full((1, len(path), 4), -8.0)
    logits[0, torch.arange(len(path)), torch.tensor(path)] = 8.0
    best = D.ctc_beam_search(logits, beam_size=8)[0][0]
    assert best.tokens == [1, 2, 2, 3]
    assert best.timesteps == [1, 4, 7, 8]
    assert best.timesteps == [s.start for s in S.alignment_segments(
        S.forced_align(logits, torch.tensor([best.tokens])))]


def test_greedy_is_the_same_function_in_both_modules():
    assert S.greedy_decode is D.greedy_decode
    assert S.ctc_beam_search is D.ctc_beam_search and S.CtcBeamSearchDecoder is D.CtcBeamSearchDecoder


# ---------------------------------------------------------------- words and the LM
LETTERS = ["<pad>", "|", "H", "E", "L", "O", "W", "R", "D", "U"]


def spell(text, classes=LETTERS, near=None, margin=0.1, frames_per=2):
    """Logits that say ``text`` (| between words): each character for ``frames_per``
    frames, a blank after each; ``near`` = {position: rival}: the rival scores
    ``margin`` below the character there."""
    rows = []
    for i, ch in enumerate(text):
        token = classes.index(ch)
        for _ in range(frames_per):
            row = torch.full((len(classes),), -4.0)
            row[token] = 4.0
            if near and i in near:
                row[classes.index(near[i])] = 4.0 - margin
            rows.append(row)
        blank_row = torch.full((len(classes),), -4.0)
        blank_row[0] = 4.0
        rows.append(blank_row)
    return torch.stack(rows)[None]


@pytest.fixture(scope="module")
def world_lm(tmp_path_factory):
    corpus = ["HELLO WORLD", "HELLO THERE WORLD", "THE WORLD", "HELLO", "WORLD HELLO"]
    return write_arpa(corpus, tmp_path_factory.mktemp("lm") / "world.arpa", order=2)


def test_lm_turns_a_near_tie_and_a_hotword_turns_it_back(world_lm):
    logits = spell("HELLO|WURLD", near={7: "O"})  # "U" just above "O"
    plain = D.CtcBeamSearchDecoder(LETTERS, beam_size=16)(logits)[0][0]
    assert plain.text == "HELLO WURLD" and plain.words == ["HELLO", "WURLD"]
    with_lm = D.CtcBeamSearchDecoder(LETTERS, lm=world_lm, lm_weight=0.5, beam_size=16)
    assert with_lm(logits)[0][0].text == "HELLO WORLD"
    hot = D.CtcBeamSearchDecoder(LETTERS, lm=world_lm, lm_weight=0.5, beam_size=16,
                                 hotwords=["WURLD"], hotword_weight=10.0)
    best = hot(logits)[0][0]
    assert best.text == "HELLO WURLD"
    lm = NgramLM(world_lm)
    assert best.lm_score == pytest.approx(lm.score_sentence(["HELLO", "WURLD"]), abs=1e-5)
    assert best.score == pytest.approx(best.acoustic_score + 0.5 * best.lm_score + 10.0,
                                       abs=1e-4)
    # A phrase of two words counts once, when its last word ends.
    phrase = D.CtcBeamSearchDecoder(LETTERS, beam_size=16, hotwords=["HELLO WURLD"],
                                    hotword_weight=3.0)(logits)[0][0]
    assert phrase.score == pytest.approx(phrase.acoustic_score + 3.0, abs=1e-4)


def test_scores_add_up_and_lm_scores_equal_kenlm(world_lm):
    kenlm = need_module("kenlm", "test")
    model = kenlm.Model(str(world_lm))
    logits = peaky(4, batch=3, frames=40, classes=len(LETTERS))
    decoder = D.CtcBeamSearchDecoder(LETTERS, lm=world_lm, lm_weight=0.7, word_score=-0.5,
                                     beam_size=12, nbest=5)
    hyps = decoder(logits, torch.tensor([40, 31, 17]))
    unknown = longest = 0
    for b, found in enumerate(hyps):
        lp = logits[b, :[40, 31, 17][b]].double().log_softmax(-1)
        for h in found:
            assert h.lm_score == pytest.approx(
                model.score(" ".join(h.words), bos=True, eos=True) * math.log(10), abs=1e-4)
            # Each word KenLM does not know costs the default unk_score, -6, and -15
            # (partial_oov) per 6 letters past its sixth.
            oov = [w for w in h.words if w not in model]
            unknown += len(oov)
            longest = max([longest] + [len(w) for w in oov])
            assert h.unk_score == pytest.approx(
                sum(-6.0 - 15.0 * max(0.0, len(w) / 6 - 1) for w in oov), abs=1e-12)
            assert h.score == pytest.approx(h.acoustic_score + 0.7 * h.lm_score
                                            - 0.5 * len(h.words) + h.unk_score, abs=1e-4)
            assert h.acoustic_score <= -nll(lp, h.tokens, 0) + 2e-4  # exact, or pruned
            assert h.words == "".join(LETTERS[t] for t in h.tokens).replace("|", " ").split()
    assert unknown > 0 and longest > 6  # the random logits spell unknown words, long ones


def test_word_spans():
    logits = spell("HE|LO", frames_per=2)  # H H - E E - | | - L L - O O -
    best = D.CtcBeamSearchDecoder(LETTERS, beam_size=8)(logits)[0][0]
    assert best.words == ["HE", "LO"]
    assert best.timesteps == [0, 3, 6, 9, 12]
    assert best.word_spans == [(0, 4), (9, 13)]


SENTENCEPIECE = ["<blank>", "\u2581he", "llo", "\u2581hel", "lo", "\u2581world", "\u2581wor", "ld"]


def test_sentencepiece_words_and_two_tokenisations_stay_apart(tmp_path):
    frames = [1, 0, 2, 0, 5, 0]  # ▁he llo ▁world; ▁hel and lo close behind
    logits = torch.full((1, len(frames), len(SENTENCEPIECE)), -6.0)
    for t, token in enumerate(frames):
        logits[0, t, token] = 4.0
    logits[0, 0, 3] = 3.95
    logits[0, 2, 4] = 3.9
    decoder = D.CtcBeamSearchDecoder(SENTENCEPIECE, word_delimiter="\u2581", beam_size=16,
                                     nbest=4, distinct_texts=False)
    hyps = decoder(logits)[0]
    assert [h.text for h in hyps] == ["hello world", "helllo world", "helo world",
                                      "hello world"]
    assert hyps[0].tokens == [1, 2, 5] and hyps[3].tokens == [3, 4, 5]
    # By default the text appears once, as its best tokenisation.
    texts = D.CtcBeamSearchDecoder(SENTENCEPIECE, word_delimiter="\u2581", beam_size=16,
                                   nbest=4)(logits)[0]
    assert texts[:3] == hyps[:3] and texts[3].text not in {h.text for h in hyps[:3]}
    assert hyps[0].words == ["hello", "world"] and hyps[0].word_spans == [(0, 3), (4, 5)]
    lm_path = write_arpa(["hello world"], tmp_path / "sp.arpa", order=2)
    with_lm = D.CtcBeamSearchDecoder(SENTENCEPIECE, word_delimiter="\u2581", lm=lm_path,
                                     beam_size=16)(logits)[0][0]
    assert with_lm.text == "hello world"
    assert with_lm.lm_score == pytest.approx(NgramLM(lm_path).score_sentence("hello world"),
                                             abs=1e-5)


def test_from_hf_takes_the_vocabulary_blank_and_delimiter(tmp_path):
    require(HF, "hf")
    from transformers import Wav2Vec2CTCTokenizer

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
             **{ch: 5 + i for i, ch in enumerate("EHLOWRDU")}}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(path), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    decoder = D.CtcBeamSearchDecoder.from_hf(tokenizer, beam_size=8)
    assert decoder.blank == 0 and decoder.word_delimiter == "|"
    assert decoder.tokens[:6] == ["<pad>", "<s>", "</s>", "<unk>", "|", "E"]
    order = sorted(vocab, key=vocab.get)
    best = decoder(spell("HELLO|WORLD", classes=order))[0][0]
    assert best.text == "HELLO WORLD"
    assert tokenizer.decode(best.tokens, group_tokens=False) == "HELLO WORLD"


# ---------------------------------------------------------------- errors
def test_errors(tmp_path):
    x = torch.zeros(2, 5, 4)
    with pytest.raises(ValueError, match=r"beam_size must be an integer in \[1, 1048576\]"):
        D.ctc_beam_search(x, beam_size=0)
    with pytest.raises(ValueError, match="nbest .3. cannot exceed beam_size .2."):
        D.ctc_beam_search(x, beam_size=2, nbest=3)
    with pytest.raises(ValueError, match=r"blank must be a class id in \[0, 3\]"):
        D.ctc_beam_search(x, blank=4)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, T, C\)"):
        D.ctc_beam_search(x[0])
    with pytest.raises(TypeError, match="floating-point"):
        D.ctc_beam_search(x.long())
    with pytest.raises(ValueError, match=r"logits_len must be <= the padded time axis of logits \(5\), got 6 for example 1"):
        D.ctc_beam_search(x, torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="time-first"):
        D.ctc_beam_search(torch.zeros(5, 2, 4), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match="C=4 classes but the vocabulary has 3 tokens"):
        D.CtcBeamSearchDecoder(["-", "a", "|"])(x)
    with pytest.raises(ValueError, match="word_delimiter '\\|' is not in the vocabulary"):
        D.CtcBeamSearchDecoder(["-", "a", "b"])
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        D.CtcBeamSearchDecoder(["-", "a", "|"], lm=tmp_path / "missing.arpa")
    not_arpa = tmp_path / "notes.txt"
    not_arpa.write_text("\n\nhello\n")
    with pytest.raises(ValueError, match=r"notes.txt, line 3: not an ARPA file"):
        D.CtcBeamSearchDecoder(["-", "a", "|"], lm=not_arpa)
    with pytest.raises(ValueError, match="lm_weight must be a finite number"):
        D.CtcBeamSearchDecoder(["-", "a", "|"], lm_weight=math.nan)


# ---------------------------------------------------------------- the two searches
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.integers(1, 12), nbest=st.integers(1, 3),
       lm_weight=st.sampled_from([0.0, 0.5, 2.0]), word_score=st.sampled_from([-1.0, 0.0, 1.5]),
       hot=st.booleans(), prune=st.booleans(), blank=st.integers(0, len(LETTERS) - 1),
       double=st.booleans(), unk_score=st.sampled_from([0.0, -6.0, -20.0, 3.0]),
       partial_oov=st.sampled_from([0.0, -4.0, -15.0, -40.0]))
def test_c_kernel_equals_the_tensor_search(world_lm, seed, beam, nbest, lm_weight, word_score,
                                           hot, prune, blank, double, unk_score, partial_oov):
    """The compiled search (CPU) and the tensor one (what CUDA runs) find the same
    hypotheses with the same scores, words, LM, hotwords, unknown words (a positive
    unk_score too) and pruning included."""
    need_c_kernel()
    nbest = min(nbest, beam)
    if LETTERS[blank] == "|":
        blank = 0
    logits = peaky(seed % 1000, batch=3, frames=25, classes=len(LETTERS), blank=blank,
                   sharp=5.0)
    if double:
        logits = logits.double()
    lengths = torch.tensor([25, 18, 0])
    decoder = D.CtcBeamSearchDecoder(
        LETTERS, blank=blank, lm=world_lm, lm_weight=lm_weight, word_score=word_score,
        hotwords=["WURLD", "HELLO WORLD"] if hot else None, beam_size=beam, nbest=nbest,
        token_min_logp=-6.0 if prune else None, beam_threshold=8.0 if prune else None,
        unk_score=unk_score, partial_oov=partial_oov) if unk_score <= 0 else None
    if decoder is None:
        with pytest.warns(UserWarning, match="unk_score=3.0 is positive"):
            decoder = D.CtcBeamSearchDecoder(
                LETTERS, blank=blank, lm=world_lm, lm_weight=lm_weight, word_score=word_score,
                beam_size=beam, nbest=nbest, unk_score=unk_score, partial_oov=partial_oov,
                token_min_logp=-6.0 if prune else None, beam_threshold=8.0 if prune else None)
    words = decoder._words_on(torch.device("cpu"))
    log_probs = D._log_probs(logits, lengths)
    compiled = D._search(log_probs, lengths, blank, beam, nbest, words,
                         decoder.token_min_logp, decoder.beam_threshold)
    tensors = D._search_tensors(log_probs, lengths, blank, beam, nbest, words,
                                decoder.token_min_logp, decoder.beam_threshold)
    assert [[h[0] for h in hyps] for hyps in compiled] == [[h[0] for h in hyps]
                                                            for hyps in tensors]
    assert [[h[1] for h in hyps] for hyps in compiled] == [[h[1] for h in hyps]
                                                            for hyps in tensors]
    for got, want in zip(compiled, tensors, strict=True):
        np.testing.assert_allclose([h[2:7] for h in got], [h[2:7] for h in want], rtol=1e-5,
                                   atol=1e-4)


def test_the_c_kernel_searches_for_cuda_tensors_too(monkeypatch):
    """Where the C kernel is built it runs every search on the host (a CUDA batch is
    copied over once); switched off, the search stays on the tensors' device."""
    cuda = torch.device("cuda")  # a device name only: nothing here needs a GPU
    kernel_on = os.environ.get("SEQ_LOSS_UTIL_KERNEL") != "0"
    if kernel_on:
        need_c_kernel()
        assert D._search_device(cuda) == torch.device("cpu")
        assert D._search_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
    assert D._search_device(cuda) == cuda
    assert D._search_device("cpu") == torch.device("cpu")
    # Padded frames (NaN here) never reach a score. _log_probs leaves them as they are;
    # the tensor search, which reads them, zeroes them where it starts, and the C kernel
    # never reads them: the padded example decodes as it does alone, on either search.
    logits = peaky(4, batch=2, frames=6)
    logits[1, 3:] = math.nan
    lengths = torch.tensor([6, 3])
    for kernel in ([False, True] if kernel_on else [False]):
        if kernel:
            monkeypatch.delenv("SEQ_LOSS_UTIL_KERNEL")
        assert D._log_probs(logits, lengths)[1, 3:].isnan().all()
        assert torch.isfinite(D._padded_frames_zeroed(D._log_probs(logits, lengths),
                                                      lengths)[0]).all()
        padded = D.ctc_beam_search(logits, lengths, beam_size=4, nbest=4)[1]
        alone = D.ctc_beam_search(logits[1:, :3], lengths[1:], beam_size=4, nbest=4)[0]
        assert [(h.tokens, h.timesteps) for h in padded] == \
            [(h.tokens, h.timesteps) for h in alone]
        assert all(math.isfinite(h.score) and abs(h.score - a.score) < 1e-9
                   for h, a in zip(padded, alone, strict=True))


def test_known_continuations_table_follows_the_kernels_rule(world_lm):
    """Each listed token grows its key into a known prefix (or adds no characters), and
    no unlisted one does: checked for every key and token, in both word modes."""
    tokens = LETTERS + [""]  # a token with no characters continues any known prefix
    for delimiter, vocab in (("|", tokens), ("\u2581", ["-", "\u2581HE", "LLO", "\u2581WOR",
                                                       "LD", "L", "O", "\u2581", "X"])):
        decoder = D.CtcBeamSearchDecoder(vocab, word_delimiter=delimiter, lm=world_lm,
                                         hotwords=["WURLD"])
        words = decoder._words_on(torch.device("cpu"))
        unknown = words.find(D.UnknownWordScorer)
        keys, start, listed = unknown.children(words)
        known = set(unknown.prefixes.tolist())
        assert keys.tolist() == sorted(known | {0})
        for j, key in enumerate(keys.tolist()):
            got = sorted(listed[start[j]:start[j + 1]].tolist())
            want = []
            for c in range(len(vocab)):
                if bool(words.boundary[c]):
                    continue
                grown = (torch.tensor(key) * words.char_power[c] + words.char_hash[c]).item()
                if grown in known or int(words.char_len[c]) == 0:
                    want.append(c)
            assert got == want, (key, got, want)
    # Spot checks by spelling: after "WOR" only "L" keeps a known word going.
    from ngram_lm import string_hash
    words = D.CtcBeamSearchDecoder(LETTERS, lm=world_lm)._words_on(torch.device("cpu"))
    keys, start, listed = words.find(D.UnknownWordScorer).children(words)
    j = keys.tolist().index(string_hash("WOR"))
    assert [LETTERS[c] for c in listed[start[j]:start[j + 1]].tolist()] == ["L"]


def children(decoder):
    """The C kernel's table of known continuations for ``decoder`` (on the CPU)."""
    words = decoder._words_on(torch.device("cpu"))
    return words.find(D.UnknownWordScorer).children(words)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.sampled_from([1, 3, 8, 24]),
       nbest=st.integers(1, 3), hot=st.booleans(), prune=st.booleans(),
       double=st.booleans(), partial_oov=st.sampled_from([-1.0, -15.0, -40.0]))
def test_known_continuations_change_nothing_but_speed(world_lm, seed, beam, nbest, hot,
                                                      prune, double, partial_oov):
    """The kernel with the table of known continuations and without it (a budget of
    0) finds the same hypotheses with the same scores, to the bit."""
    need_c_kernel()
    logits = peaky(seed % 1000, batch=3, frames=40, classes=len(LETTERS), sharp=4.0)
    if double:
        logits = logits.double()
    lengths = torch.tensor([40, 23, 0])
    options = dict(lm=world_lm, lm_weight=1.0, hotwords=["WURLD"] if hot else None,
                   beam_size=beam, nbest=min(nbest, beam),
                   token_min_logp=-6.0 if prune else None,
                   beam_threshold=8.0 if prune else None, partial_oov=partial_oov)
    with_table = D.CtcBeamSearchDecoder(LETTERS, **options)
    assert children(with_table)[0].numel() > 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(D.UnknownWordScorer, "CHILD_TABLE_BUDGET", 0)
        without = D.CtcBeamSearchDecoder(LETTERS, **options)
        assert children(without)[0].numel() == 0
        assert with_table(logits, lengths) == without(logits, lengths)


ONE_WORD_ARPA = ("\\data\\\nngram 1=4\nngram 2=1\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n-1.0\t</s>\n"
                 "-2.0\t<unk>\n-0.5\td\t-0.2\n\n\\2-grams:\n-0.1\td d\n\n\\end\\\n")


def test_a_rank_on_the_threshold_is_not_cut_by_rounding(tmp_path):
    """A bound summed in another order than the rank it bounds once rounded one unit
    below it, and the search stopped before a hypothesis that met the threshold
    exactly: the best one here. Both searches now keep it."""
    need_c_kernel()
    arpa = tmp_path / "d.arpa"
    arpa.write_text(ONE_WORD_ARPA)
    decoder = D.CtcBeamSearchDecoder(["<b>", "|", "a", "d"], lm=str(arpa), beam_size=4,
                                     nbest=4, beam_threshold=6.0, partial_oov=-10.0,
                                     unk_score=0.0)
    logits = torch.tensor([[[6., -6, -2, 1], [-4, -6, 0, -5], [-2, 6, -2, 0]]],
                          dtype=torch.float64)
    words = decoder._words_on(torch.device("cpu"))
    log_probs = D._log_probs(logits, torch.tensor([3]))
    args = (log_probs, torch.tensor([3]), 0, 4, 4, words, None, 6.0)
    compiled, tensors = D._search(*args), D._search_tensors(*args)
    assert [h[0] for h in compiled[0]] == [h[0] for h in tensors[0]] == [[2, 1], [1], [3, 1]]
    np.testing.assert_allclose([h[2] for h in compiled[0]], [h[2] for h in tensors[0]],
                               rtol=1e-12)
    assert compiled[0][0][2] == pytest.approx(-3.8366248819409394, abs=1e-12)


def test_nan_in_a_valid_frame_ends_with_an_lm(tmp_path):
    """A NaN log-probability once made the kernel's walk over a word's known
    continuations return the same token again, forever. It ends now, and the NaN
    shows in the score (never a silent number). The decoder refuses such a frame
    before the search (tests/test_fuzz_faults.py); the kernel is called past that
    check here, as a caller of the search itself could. Run in a child process: a
    regression would hang."""
    import subprocess
    import sys

    need_c_kernel()
    arpa = tmp_path / "d.arpa"
    arpa.write_text(ONE_WORD_ARPA)
    script = (
        "import math, sys, torch\n"
        "import ctc_decoder as D\n"
        f"dec = D.CtcBeamSearchDecoder(['_', '|', 'a', 'd', 'x'], lm={str(arpa)!r}, "
        "beam_size=4)\n"
        "x = torch.randn(1, 6, 5, generator=torch.Generator().manual_seed(0))\n"
        "n = torch.tensor([6])\n"
        "lp = D._log_probs(x, n)\n"
        "lp[0, 2, 3] = float('nan')\n"
        "words = dec._words_on(torch.device('cpu'))\n"
        "best = D._search(lp, n, 0, 4, 1, words, None, None)[0][0]\n"
        "sys.exit(0 if math.isnan(best[2]) and math.isnan(best[3]) else 1)\n")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, timeout=120,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_unigram_lm_decodes_on_both_searches(tmp_path):
    """A unigram model has no context: the tensor search once failed on shapes
    (-1, 0); both searches now give the same hypotheses and scores."""
    need_c_kernel()
    arpa = tmp_path / "uni.arpa"
    arpa.write_text("\\data\\\nngram 1=5\n\n\\1-grams:\n-1.0\t<s>\n-1.0\t</s>\n-2.0\t<unk>\n"
                    "-0.5\tab\n-0.7\tb\n\n\\end\\\n")
    decoder = D.CtcBeamSearchDecoder(["-", "|", "a", "b"], lm=str(arpa), beam_size=4, nbest=2)
    logits = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8, 5])
    words = decoder._words_on(torch.device("cpu"))
    args = (D._log_probs(logits, lengths), lengths, 0, 4, 2, words, None, None)
    compiled, tensors = D._search(*args), D._search_tensors(*args)
    assert [[h[0] for h in hyps] for hyps in compiled] == [[h[0] for h in hyps]
                                                            for hyps in tensors]
    for got, want in zip(compiled, tensors, strict=True):
        np.testing.assert_allclose([h[2:7] for h in got], [h[2:7] for h in want], rtol=1e-5)
    best = decoder(logits, lengths)[0][0]
    assert best.lm_score == pytest.approx(NgramLM(str(arpa)).score_sentence(best.words),
                                          abs=1e-5)


@pytest.mark.parametrize("classes", [11, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_the_searches_log_softmax_from_the_kernel(classes, dtype):
    # Where the C kernel is built, it computes the searches' log-probabilities (torch's
    # threaded log_softmax left OpenMP's workers spinning on the search's cores): to
    # within 4 ulps of the float64 value (torch's own: 3), and a bad frame is one within
    # the example's length whose row holds NaN or +inf, or is all -inf.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    g = torch.Generator().manual_seed(classes)
    x = (torch.randn(5, 23, classes, generator=g, dtype=torch.float64) * 8).to(dtype)
    x[1, 3, 2] = math.nan
    x[2, 4] = -math.inf  # no class possible
    x[3, 5, 0] = -math.inf  # one class masked: a good frame
    x[4, 21, 1] = math.inf  # past example 4's length: never read
    x[0, 7, 3] = math.inf
    lengths = torch.tensor([23, 23, 23, 23, 20])
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    log_probs, first = cpu.decode_log_softmax(x, lengths, compute)
    assert log_probs.dtype == compute and log_probs.shape == x.shape
    want = torch.log_softmax(x.double(), dim=2)
    bad = want.isnan().any(2)
    bad[4, 20:] = False  # past the length
    good = ~bad[:, :, None].expand_as(want) & want.isfinite()
    error = (log_probs.double() - want).abs()[good] / want.abs()[good].clamp(min=1)
    assert float(error.max()) <= 4 * torch.finfo(compute).eps
    assert torch.isnan(log_probs[1, 3]).all() and torch.isnan(log_probs[2, 4]).all()
    assert log_probs[3, 5, 0] == -math.inf
    with pytest.raises(ValueError, match="example 0 at frame 7"):
        D.ctc_beam_search(x, lengths)
    found = []  # every bad frame, first first: each found, then mended
    while first is not None:
        found.append(first)
        x[first] = 0.0
        first = cpu.decode_log_softmax(x, lengths, compute)[1]
    assert found == [(0, 7), (1, 3), (2, 4)] == [tuple(i) for i in bad.nonzero().tolist()]


def test_the_searches_log_softmax_reads_a_slice_and_its_threads_agree(monkeypatch):
    # A chunk sliced from a longer tensor is read in place (each example's rows one
    # block); split over threads or not, and whatever its rows share a call with, each
    # row's log-probabilities are the same bits, and the first bad frame the same.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 50, 13, generator=g) * 5
    x[4, 30, 2], x[2, 41, 0], x[5, 10, 1] = math.nan, math.inf, math.nan
    lengths = torch.tensor([50, 50, 45, 50, 35, 50])
    whole, first = cpu.decode_log_softmax(x, lengths, torch.float32)
    assert first == (2, 41)  # example 4's NaN is past its length; 5's comes later
    chunk = x[:, 17:46]
    assert not chunk.is_contiguous()
    part, first = cpu.decode_log_softmax(chunk, (lengths - 17).clamp(0, 29), torch.float32)
    assert first == (2, 24)
    assert torch.equal(part.view(torch.int32), whole[:, 17:46].view(torch.int32))
    monkeypatch.setattr(cpu, "_threads", lambda batch, work: 3)  # examples 0-1, 2-3, 4-5
    threaded, first = cpu.decode_log_softmax(x, lengths, torch.float32)
    assert first == (2, 41)
    assert torch.equal(threaded.view(torch.int32), whole.view(torch.int32))
    threaded, first = cpu.decode_log_softmax(chunk, (lengths - 17).clamp(0, 29),
                                             torch.float32)
    assert first == (2, 24)
    assert torch.equal(threaded.view(torch.int32), part.view(torch.int32))
