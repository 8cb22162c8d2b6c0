"""ngram_lm: ARPA files read into tensors, scored with KenLM's semantics (checked
against kenlm itself), clear errors on files that are not ARPA, and write_arpa's
models normalised."""
import gzip
import math
import random

import pytest
import torch

from ngram_lm import NgramLM, hash_parts, string_hash, write_arpa
from optional_deps import need_module

CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
          "the cat saw the dog", "on the mat the cat sat", "hello world", "hello there world",
          "the world is round", "a dog saw a cat on a log"]

# A pruned model with no <unk>: the trigram "a b c" has no "b c" bigram (its suffix,
# which KenLM allows), and "c" no backoff of its own.
PRUNED = """
\\data\\
ngram 1=6
ngram 2=8
ngram 3=2

\\1-grams:
-1.0\t<s>\t-0.30103
-0.69897\ta\t-0.2
-0.52288\tb\t-0.4
-0.60206\tc
-0.8\td
-0.9\t</s>

\\2-grams:
-0.3\t<s> a\t-0.05
-0.2\ta b\t-0.15
-0.4\tc d
-0.5\td c
-0.7\tc a
-0.8\td </s>
-0.9\ta d
-1.0\tb </s>

\\3-grams:
-0.1\t<s> a b
-0.25\ta b c

\\end\\
"""


@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    return write_arpa(CORPUS, tmp_path_factory.mktemp("lm") / "corpus.arpa", order=3)


def kenlm_score(path, words):
    kenlm = need_module("kenlm", "test")
    return kenlm.Model(str(path)).score(" ".join(words), bos=True, eos=True) * math.log(10)


def random_sentences(seed, count=60):
    rng = random.Random(seed)
    vocab = sorted({w for s in CORPUS for w in s.split()}) + ["zebra", "<unk>", "qq"]
    return [[rng.choice(vocab) for _ in range(rng.randint(0, 8))] for _ in range(count)]


@pytest.mark.parametrize("gzipped", [False, True])
def test_scores_equal_kenlm(arpa, tmp_path, gzipped):
    path = arpa
    if gzipped:
        path = tmp_path / "corpus.arpa.gz"
        with open(arpa, "rb") as src, gzip.open(path, "wb") as dst:
            dst.write(src.read())
    lm = NgramLM(path)
    assert lm.order == 3
    for words in random_sentences(0) + [s.split() for s in CORPUS]:
        # KenLM adds in float32.
        assert lm.score_sentence(words) == pytest.approx(kenlm_score(arpa, words), rel=1e-6,
                                                         abs=2e-5)


def test_pruned_file_without_unk_equals_kenlm(tmp_path):
    path = tmp_path / "pruned.arpa"
    path.write_text(PRUNED)
    lm = NgramLM(path)
    vocab = ["a", "b", "c", "d", "zz"]
    rng = random.Random(1)
    for _ in range(80):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 6))]
        assert lm.score_sentence(words) == pytest.approx(kenlm_score(path, words), rel=1e-6,
                                                         abs=2e-5), words


def test_known_backoff_values(tmp_path):
    path = tmp_path / "pruned.arpa"
    path.write_text(PRUNED)
    lm = NgramLM(path)
    ln10 = math.log(10)
    # p(b | <s> a) is the trigram itself; p(</s> | a b) backs off to the bigram.
    assert lm.score_sentence(["a", "b"]) == pytest.approx(
        (-0.3 + -0.1 + (-0.15 + -1.0)) * ln10, abs=1e-9)
    # p(</s> | b a) has neither the trigram nor the context "b a" (backoff 0); then
    # "a </s>" is missing too: a's backoff and the unigram.
    assert lm.score_sentence(["b", "a"]) == pytest.approx(
        (-0.30103 - 0.52288 + (-0.4 - 0.69897) + (-0.2 - 0.9)) * ln10, abs=1e-9)
    # A file whose trigram "b a d" lacks its context "b a" (KenLM refuses it): the
    # context is a placeholder that passes "b a" on, and is never scored itself.
    missing = tmp_path / "missing_context.arpa"
    missing.write_text(PRUNED.replace("ngram 3=2", "ngram 3=3").replace(
        "-0.25\ta b c", "-0.25\ta b c\n-0.05\tb a d"))
    lm = NgramLM(missing)
    assert lm.score_sentence(["b", "a", "d"], eos=False) == pytest.approx(
        (-0.30103 - 0.52288 + (-0.4 - 0.69897) - 0.05) * ln10, abs=1e-9)
    assert lm.score_sentence(["b", "a"]) == pytest.approx(
        (-0.30103 - 0.52288 + (-0.4 - 0.69897) + (-0.2 - 0.9)) * ln10, abs=1e-9)
    # An unknown word: <unk>'s -100, after backing off from <s>'s context.
    assert lm.score_sentence(["zz"], eos=False) == pytest.approx((-0.30103 - 100) * ln10,
                                                               abs=1e-9)


def test_batched_scores_equal_one_at_a_time(arpa):
    lm = NgramLM(arpa)
    sentences = random_sentences(2, 20)
    words = [s + ["</s>"] for s in sentences]
    context = lm.start(len(words))
    totals = torch.zeros(len(words), dtype=torch.float64)
    for step in range(max(len(w) for w in words)):
        ids = torch.tensor([lm.vocab.get(w[step], lm.unk) if step < len(w) else lm.eos
                            for w in words])
        score, following = lm.score(context, ids)
        live = torch.tensor([step < len(w) for w in words])
        totals = totals + torch.where(live, score, 0.0)
        context = torch.where(live[:, None], following, context)
    expected = torch.tensor([lm.score_sentence(s) for s in sentences], dtype=torch.float64)
    torch.testing.assert_close(totals, expected, rtol=0, atol=1e-9)


def test_lookup_by_hash_and_hash_parts_compose(arpa):
    lm = NgramLM(arpa)
    hashes = torch.tensor([string_hash(w) for w in ["cat", "world", "zebra"]])
    assert lm.lookup(hashes).tolist() == [lm.vocab["cat"], lm.vocab["world"], lm.unk]
    # The hash of a concatenation from its parts, as a decoder builds it from tokens.
    (ha, _), (hb, pb) = hash_parts("wor"), hash_parts("ld")
    combined = torch.tensor(ha) * torch.tensor(pb) + torch.tensor(hb)  # int64 wraps
    assert int(combined) == string_hash("world")


def test_written_model_is_normalised(arpa):
    lm = NgramLM(arpa)
    # Every word but <s> can follow; the probabilities of one context sum to 1.
    vocab = [w for w in lm.vocab if w != "<s>"]
    ids = torch.tensor([lm.vocab[w] for w in vocab])
    for history in [["<s>"], ["<s>", "the"], ["the", "cat"], ["zebra", "the"], ["a", "dog"]]:
        context = torch.full((len(vocab), 2), -1, dtype=torch.long)
        hist = [lm.vocab.get(w, lm.unk) for w in history]
        context[:, 2 - len(hist):] = torch.tensor(hist)
        score, _ = lm.score(context, ids)
        assert float(score.exp().sum()) == pytest.approx(1.0, abs=1e-4), history


BROKEN = [  # (file name, its text, what the error says)
    ("words.txt", "just some words\n", r"words.txt, line 1: not an ARPA file"),
    ("bad.arpa", PRUNED.replace("-0.52288\tb", "minus\tb"),
     r"bad.arpa, line 10: the probability"),
    ("short.arpa", PRUNED.split("\\3-grams:")[0], r"short.arpa: the file ends before"),
    ("count.arpa", PRUNED.replace("ngram 2=8", "ngram 2=9"),
     r"count.arpa: the header promises 9 2-grams"),
    ("unknown.arpa", PRUNED.replace("-0.4\tc d", "-0.4\tc e"),
     r"unknown.arpa: the word 'e' of the 2-gram 'c e'"),
    ("model.bin", b"mmap lm http://kheafield.com/code format version 5\x00\xff\xfe",
     r"model.bin"),
]


@pytest.mark.parametrize("name, text, says", BROKEN, ids=[b[0] for b in BROKEN])
def test_errors_name_the_file_and_line(tmp_path, name, text, says):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ValueError, match=says):
        NgramLM(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.arpa"):
        NgramLM(tmp_path / "nowhere.arpa")
