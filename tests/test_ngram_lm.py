"""ngram_lm: ARPA files read into tensors, scored with KenLM's semantics (checked
against kenlm itself). Files KenLM refuses are refused with the file and line named,
files it takes (odd ones included: -inf, repeated n-grams, empty orders) score as
there, gzip is told by content, and write_arpa's models are normalised."""
import gzip
import math
import os
import random
import re
import shutil
import zlib

import pytest
import torch

from ngram_lm import ArpaError, NgramLM, hash_parts, prefix_hashes, string_hash, write_arpa
from optional_deps import need_c_kernel, need_module

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


def batched_totals(lm, sentences):
    """ln p of each sentence (with </s>) by :meth:`NgramLM.score` on all of them at
    once, word by word, as the tensor search calls it."""
    words = [list(s) + ["</s>"] for s in sentences]
    context = lm.start(len(words))
    totals = torch.zeros(len(words), dtype=torch.float64)
    for step in range(max(len(w) for w in words)):
        ids = torch.tensor([lm.vocab.get(w[step], lm.unk) if step < len(w) else lm.eos
                            for w in words])
        score, following = lm.score(context, ids)
        live = torch.tensor([step < len(w) for w in words])
        totals = totals + torch.where(live, score, 0.0)
        context = torch.where(live[:, None], following, context)
    return totals


def test_batched_scores_equal_one_at_a_time(arpa):
    lm = NgramLM(arpa)
    sentences = random_sentences(2, 20)
    expected = torch.tensor([lm.score_sentence(s) for s in sentences], dtype=torch.float64)
    torch.testing.assert_close(batched_totals(lm, sentences), expected, rtol=0, atol=1e-9)


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


def edit(text, *changes):
    """``text`` with each ``(old, new)`` made, where ``old`` occurs exactly once (so that
    a table entry cannot silently stay the file it was made from)."""
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def line_of(data, at):
    """The 1-based line of ``data`` that equals ``at`` (a string, found once), or
    ``at`` itself (a number)."""
    if isinstance(at, int):
        return at
    lines = (data.decode("utf-8") if isinstance(data, bytes) else data).split("\n")
    found = [i for i, line in enumerate(lines, 1) if line == at]
    assert len(found) == 1, (at, found)
    return found[0]


def write(path, data):
    """``data`` (text or bytes) as the bytes of ``path``, with no newline translation."""
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def kenlm_rejects(path):
    kenlm = need_module("kenlm", "test")
    with pytest.raises(OSError, match="Cannot read model"):
        kenlm.Model(str(path))


def assert_scores_equal_kenlm(path, sentences, *, bos=True, eos=True):
    """NgramLM's ln p of each sentence equals KenLM's (which sums float32s), -inf
    included."""
    kenlm = need_module("kenlm", "test")
    model, lm = kenlm.Model(str(path)), NgramLM(path)
    for words in sentences:
        want = model.score(" ".join(words), bos=bos, eos=eos) * math.log(10)
        got = lm.score_sentence(words, bos=bos, eos=eos)
        if math.isinf(want):
            assert got == want, (words, got, want)
        else:
            assert got == pytest.approx(want, rel=1e-6, abs=2e-5), (words, got, want)


# The sections of PRUNED, for entries that drop one whole.
TRIGRAMS = "\\3-grams:\n-0.1\t<s> a b\n-0.25\ta b c\n"

# Files that KenLM refuses (each entry checks that it does), with the line that the
# error must name (the line's text, or its number) and what it must say. PRUNED
# itself loads in both; each entry breaks one rule.
MALFORMED = [
    ("words_not_arpa", "just some words\n", 1, r"not an ARPA file"),
    ("binary_model", b"mmap lm http://kheafield.com/code format version 5\x00\xff\xfe", 1,
     r"not UTF-8 text"),
    # The header: orders 1, 2, 3, ... once each, and each with its section.
    ("order_without_section", edit(PRUNED, (TRIGRAMS, "")), "\\end\\",
     r"no \\3-grams: section, though line 5 counts 3-grams"),
    ("empty_order_without_section", edit(PRUNED, ("ngram 3=2", "ngram 3=0"), (TRIGRAMS, "")),
     "\\end\\", r"no \\3-grams: section, though line 5"),
    ("header_line_twice", edit(PRUNED, ("ngram 1=6\n", "ngram 1=6\nngram 1=6\n")), 4,
     r"expected 'ngram 2=count'"),
    ("header_order_skipped", edit(PRUNED, ("ngram 2=8\n", "")), "ngram 3=2",
     r"expected 'ngram 2=count'"),
    ("header_count_not_a_number", edit(PRUNED, ("ngram 2=8", "ngram 2=\u0668")),
     "ngram 2=\u0668", r"expected 'ngram N=count'"),
    ("section_out_of_order", edit(PRUNED, ("\\3-grams:", "\\4-grams:")), "\\4-grams:",
     r"expected the \\3-grams: section"),
    # Counts that disagree with the sections: the first line too many, or the line
    # where a section ends short.
    ("count_too_small", edit(PRUNED, ("ngram 2=8", "ngram 2=7")), "-1.0\tb </s>",
     r"more 2-grams than the 7 that line 4 gives"),
    ("count_too_large", edit(PRUNED, ("ngram 2=8", "ngram 2=9")), "\\3-grams:",
     r"the 2-grams end after 8 of the 9 that line 4 gives"),
    ("count_too_large_at_end", edit(PRUNED, ("ngram 3=2", "ngram 3=3")), "\\end\\",
     r"the 3-grams end after 2 of the 3 that line 5 gives"),
    ("ends_before_end", PRUNED.split("\\3-grams:")[0], 25, r"the file ends before \\end\\"),
    ("text_after_end", PRUNED + "junk\n", "junk", r"text after \\end\\"),
    # The sentence markers.
    ("no_bos", edit(PRUNED, ("ngram 1=6", "ngram 1=5"), ("ngram 2=8", "ngram 2=7"),
                    ("ngram 3=2", "ngram 3=1"), ("-1.0\t<s>\t-0.30103\n", ""),
                    ("-0.3\t<s> a\t-0.05\n", ""), ("-0.1\t<s> a b\n", "")),
     "\\2-grams:", r"the 1-grams lack <s>"),
    ("no_eos", edit(PRUNED, ("ngram 1=6", "ngram 1=5"), ("ngram 2=8", "ngram 2=6"),
                    ("-0.9\t</s>\n", ""), ("-0.8\td </s>\n", ""), ("-1.0\tb </s>\n", "")),
     "\\2-grams:", r"the 1-grams lack </s>"),
    # Probabilities and backoffs.
    ("positive_probability", edit(PRUNED, ("-0.8\td\n", "0.8\td\n")), "0.8\td",
     r"a positive log10 probability"),
    ("positive_trigram_probability", edit(PRUNED, ("-0.1\t<s> a b", "0.1\t<s> a b")),
     "0.1\t<s> a b", r"a positive log10 probability"),
    ("inf_probability", edit(PRUNED, ("-0.8\td\n", "inf\td\n")), "inf\td",
     r"a positive log10 probability"),
    ("nan_probability", edit(PRUNED, ("-0.4\tc d", "nan\tc d")), "nan\tc d",
     r"the probability is not a number"),
    ("infinity_spelled_out", edit(PRUNED, ("-0.8\td\n", "-infinity\td\n")), "-infinity\td",
     r"the probability is not a number"),
    ("underscore_in_number", edit(PRUNED, ("-0.8\td\n", "-0_8\td\n")), "-0_8\td",
     r"the probability is not a number"),
    ("arabic_indic_digits", edit(PRUNED, ("-0.8\td\n", "-\u0660.\u0668\td\n")),
     "-\u0660.\u0668\td", r"the probability is not a number"),
    ("nan_backoff", edit(PRUNED, ("a b\t-0.15", "a b\tnan")), "-0.2\ta b\tnan",
     r"the backoff is not a number"),
    ("underscore_in_backoff", edit(PRUNED, ("a\t-0.2", "a\t-0_2")), "-0.69897\ta\t-0_2",
     r"the backoff is not a number"),
    ("inf_backoff", edit(PRUNED, ("a\t-0.2", "a\tinf")), "-0.69897\ta\tinf",
     r"the backoff is not finite"),
    ("minus_inf_backoff", edit(PRUNED, ("a\t-0.2", "a\t-inf")), "-0.69897\ta\t-inf",
     r"the backoff is not finite"),
    ("backoff_beyond_float32", edit(PRUNED, ("a\t-0.2", "a\t1e39")), "-0.69897\ta\t1e39",
     r"the backoff is not finite"),
    ("backoff_on_highest_order", edit(PRUNED, ("a b c\n", "a b c\t-0.1\n")),
     "-0.25\ta b c\t-0.1", r"a backoff on the highest order \(3\)"),
    # Malformed lines.
    ("too_few_words", edit(PRUNED, ("-0.4\tc d", "-0.4\tc")), "-0.4\tc",
     r"a 2-gram line needs a probability, 2 word\(s\)"),
    ("too_many_fields", edit(PRUNED, ("-0.4\tc d", "-0.4\tc d -1 -2")), "-0.4\tc d -1 -2",
     r"a 2-gram line needs"),
    ("no_probability", edit(PRUNED, ("-0.4\tc d", "c d")), "c d", r"a 2-gram line needs"),
    ("backslash_line_in_section", edit(PRUNED, ("-0.4\tc d\n", "-0.4\tc d\n\\c d\n")),
     "\\c d", r"not a 2-gram line"),
    ("word_not_a_unigram", edit(PRUNED, ("-0.4\tc d", "-0.4\tc e")), "-0.4\tc e",
     r"the word 'e' is not among the 1-grams"),
    # NUL bytes (KenLM takes one inside a word, as this reader does: see ACCEPTED).
    ("nul_after_probability", edit(PRUNED, ("-0.4\tc d", "-0.4\x00\tc d")), "-0.4\x00\tc d",
     r"the probability is not a number"),
    ("nul_line_in_section", edit(PRUNED, ("-0.4\tc d\n", "-0.4\tc d\n\x00\x00\x00\n")),
     "\x00\x00\x00", r"a 2-gram line needs"),
    ("nul_after_end", PRUNED + "\x00\x00", "\x00\x00", r"text after \\end\\"),
]


@pytest.mark.parametrize("name, data, at, says", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_what_kenlm_refuses_is_refused_naming_the_line(tmp_path, name, data, at, says):
    path = write(tmp_path / f"{name}.arpa", data)
    kenlm_rejects(path)
    with pytest.raises(ArpaError) as error:
        NgramLM(path)
    message = str(error.value)
    assert f"{path}, line {line_of(data, at)}: " in message
    assert re.search(says, message), message


def gzip_damage():
    """Damaged gzip streams of PRUNED, each with the line its error must name: the
    first line that the stream cannot deliver whole."""
    data = PRUNED.encode()
    whole = gzip.compress(data)
    lines = data.count(b"\n")
    cut = whole[:len(whole) // 2]  # what zlib makes of the half decides the line
    delivered = zlib.decompressobj(wbits=31).decompress(cut)
    bad_block = bytearray(whole)
    bad_block[10] = 0xFF  # the first deflate block: final, of the invalid type 3
    bad_crc = bytearray(whole)
    bad_crc[-8] ^= 0x01  # the trailer's CRC-32: every line reads, then the check fails
    return [("truncated", cut, delivered.count(b"\n") + 1),
            ("invalid_block", bytes(bad_block), 1),
            ("crc_mismatch", bytes(bad_crc), lines + 1),
            ("trailing_garbage", whole + b"garbage", lines + 1)]


DAMAGED_GZIP = gzip_damage()


@pytest.mark.parametrize("name, data, at", DAMAGED_GZIP, ids=[g[0] for g in DAMAGED_GZIP])
def test_a_damaged_gzip_stream_is_an_arpa_error_naming_the_line(tmp_path, name, data, at):
    path = write(tmp_path / f"{name}.arpa.gz", data)
    kenlm_rejects(path)
    with pytest.raises(ArpaError, match=re.escape(f"{path}, line {at}: cannot be read")):
        NgramLM(path)


# Files that KenLM takes, some of them odd: each must load here and score as KenLM
# scores it (unknown words included).
ACCEPTED = [
    ("pruned_without_unk", PRUNED),
    ("minus_inf_bos", edit(PRUNED, ("-1.0\t<s>", "-inf\t<s>"))),
    ("minus_99_bos", edit(PRUNED, ("-1.0\t<s>", "-99\t<s>"))),
    ("minus_inf_unigram", edit(PRUNED, ("-0.8\td\n", "-inf\td\n"))),
    ("minus_inf_bigram", edit(PRUNED, ("-0.2\ta b", "-inf\ta b"))),
    ("minus_inf_trigram", edit(PRUNED, ("-0.25\ta b c", "-inf\ta b c"))),
    ("minus_inf_unk", edit(PRUNED, ("ngram 1=6", "ngram 1=7"), ("-0.9\t</s>\n",
                                                                "-0.9\t</s>\n-inf\t<unk>\n"))),
    ("below_float32_is_minus_inf", edit(PRUNED, ("-0.8\td\n", "-1e39\td\n"))),
    ("positive_backoffs", edit(PRUNED, ("a\t-0.2", "a\t0.2"), ("a b\t-0.15", "a b\t0.15"))),
    ("zero_backoff_on_highest_order", edit(PRUNED, ("a b c\n", "a b c\t0\n"),
                                           ("<s> a b\n", "<s> a b\t-0.0\n"))),
    ("number_forms", edit(PRUNED, ("-0.8\td\n", "-.8\td\n"), ("-0.9\t</s>", "-9e-1\t</s>"),
                          ("-0.5\td c", "-5E-1\td c"), ("-1.0\tb </s>", "-1.\tb </s>"),
                          ("-0.7\tc a", "+0\tc a"))),
    # Repeated n-grams: KenLM keeps the first, but the last <unk>.
    ("repeated_ngrams", edit(PRUNED, ("ngram 1=6", "ngram 1=7"), ("ngram 2=8", "ngram 2=9"),
                             ("ngram 3=2", "ngram 3=3"),
                             ("-0.9\t</s>\n", "-0.9\t</s>\n-0.1\ta\t-1\n"),
                             ("-1.0\tb </s>\n", "-1.0\tb </s>\n-0.05\ta b\t-0.9\n"),
                             ("-0.25\ta b c\n", "-0.25\ta b c\n-0.01\ta b c\n"))),
    ("repeated_unk", edit(PRUNED, ("ngram 1=6", "ngram 1=8"),
                          ("-0.9\t</s>\n", "-0.9\t</s>\n-1\t<unk>\n-3\t<unk>\n"))),
    ("upper_case_unk", edit(PRUNED, ("ngram 1=6", "ngram 1=7"),
                            ("-0.9\t</s>\n", "-0.9\t</s>\n-2\t<UNK>\n"))),
    # Layout: comments before \data\, blank lines in sections, CRLF, any spaces and
    # tabs between the words, and white space that KenLM keeps inside a word.
    ("comments_and_blank_lines", "# made by hand\n#\n" + edit(
        PRUNED, ("-0.4\tc d\n", "-0.4\tc d\n\n \n\f\n"))),
    ("crlf_line_ends", PRUNED.replace("\n", "\r\n")),
    ("spaces_and_tabs", edit(PRUNED, ("-0.4\tc d", " -0.4 c\td"),
                             ("-0.3\t<s> a\t-0.05", "-0.3   <s>  a\t-0.05"))),
    ("odd_characters_in_words", edit(PRUNED, ("ngram 1=6", "ngram 1=9"), (
        "-0.9\t</s>\n", "-0.9\t</s>\n-1.5\tx\u00a0y\n-1.5\tv\vw\n-1.5\tn\x00l\n"))),
    # Empty orders: KenLM keeps the order, and the backoffs below it.
    ("empty_highest_order", edit(PRUNED, ("ngram 3=2", "ngram 3=0"), (TRIGRAMS, "\\3-grams:\n"),
                                 ("-0.4\tc d", "-0.4\tc d\t-0.3"))),
    ("two_empty_orders", "\\data\\\nngram 1=4\nngram 2=0\nngram 3=0\n\n\\1-grams:\n"
     "-99\t<s>\t-0.5\n-0.3\ta\t-0.25\n-0.6\tb\t0.1\n-0.5\t</s>\n\n\\2-grams:\n\n"
     "\\3-grams:\n\n\\end\\\n"),
]


def sentences_for(data, seed, count=40):
    """Random sentences over the 1-grams of ``data`` and two unknown words, and the
    empty one."""
    text = data.replace("\r\n", "\n")
    unigrams = text.split("\\1-grams:\n")[1].split("\\2-grams:")[0]
    words = {line.replace("\t", " ").split()[1] for line in unigrams.split("\n")
             if line.strip(" \t\f")}
    # (KenLM's Python binding splits a sentence at ASCII white space and ends it at a
    # NUL: such words are left out.)
    vocab = sorted(w for w in words if w not in ("<s>", "</s>") and "\v" not in w
                   and "\x00" not in w) + ["zz", "<UNK>"]
    rng = random.Random(seed)
    return [[]] + [[rng.choice(vocab) for _ in range(rng.randint(1, 6))]
                   for _ in range(count)]


@pytest.mark.parametrize("name, data", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_what_kenlm_takes_loads_and_scores_as_kenlm(tmp_path, name, data):
    path = write(tmp_path / f"{name}.arpa", data)
    assert_scores_equal_kenlm(path, sentences_for(data, seed=len(name)))


def test_the_written_model_of_an_empty_sentence_has_empty_orders(tmp_path):
    """write_arpa([[]]) counts no 3-grams (``ngram 3=0``), which KenLM loads as a
    trigram model; so does NgramLM, and both its lookups score as KenLM."""
    path = write_arpa([[]], tmp_path / "empty.arpa", order=3)
    with open(path) as handle:
        assert "ngram 3=0" in handle.read()
    lm = NgramLM(path)
    assert lm.order == 3 and lm._keys[2].numel() == 0
    sentences = [[], ["zz"], ["zz", "yy", "zz"], ["<unk>", "</s>"]]
    assert_scores_equal_kenlm(path, sentences)
    expected = torch.tensor([lm.score_sentence(s) for s in sentences], dtype=torch.float64)
    torch.testing.assert_close(batched_totals(lm, sentences), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("which", ["written", "hand_made"])
def test_both_searches_decode_with_an_empty_order(tmp_path, monkeypatch, which):
    """The C kernel (where built) and the tensor search (SEQ_LOSS_UTIL_KERNEL=0) find
    the same hypotheses with a model whose highest order is empty, and its LM scores
    are the model's."""
    import ctc_decoder as D

    if which == "written":
        path = write_arpa([[]], tmp_path / "empty.arpa", order=3)
    else:
        path = write(tmp_path / "empty_top.arpa", dict(ACCEPTED)["empty_highest_order"])
    tokens = ["-", "a", "b", "c", "d", "|"]
    logits = torch.randn(2, 14, len(tokens), generator=torch.Generator().manual_seed(5)) * 3
    kernel_on = os.environ.get("SEQ_LOSS_UTIL_KERNEL") != "0"
    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
    decoder = D.CtcBeamSearchDecoder(tokens, lm=path, lm_weight=0.8, beam_size=8, nbest=3)
    tensors = decoder(logits)
    lm = NgramLM(path)
    for hyps in tensors:
        assert hyps
        for hyp in hyps:
            assert hyp.lm_score == pytest.approx(lm.score_sentence(hyp.words), abs=1e-4)
    if not kernel_on:
        return
    monkeypatch.delenv("SEQ_LOSS_UTIL_KERNEL")
    need_c_kernel()
    compiled = D.CtcBeamSearchDecoder(tokens, lm=path, lm_weight=0.8, beam_size=8,
                                      nbest=3)(logits)
    for got, want in zip(compiled, tensors, strict=True):
        assert [h.text for h in got] == [h.text for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
        assert [h.lm_score for h in got] == pytest.approx([h.lm_score for h in want],
                                                          abs=1e-4)


@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("eos", [True, False])
def test_sentence_ends_are_kenlms(tmp_path, arpa, bos, eos):
    """Without <s>, the first word is scored with no context (its unigram), not as
    after <s>: in both models "a" and "the" after <s> have a bigram that differs from
    their unigrams."""
    path = write(tmp_path / "pruned.arpa", PRUNED)
    lm = NgramLM(path)
    assert lm.score_sentence(["a"], bos=True, eos=False) != pytest.approx(
        lm.score_sentence(["a"], bos=False, eos=False))
    starts = [["a"], ["a", "b"], ["a", "b", "c"], ["b", "a"], ["zz", "a"], []]
    assert_scores_equal_kenlm(path, starts + sentences_for(PRUNED, seed=9), bos=bos, eos=eos)
    assert_scores_equal_kenlm(arpa, [["the", "cat"], ["a", "dog"], ["hello"], []]
                              + random_sentences(3, 20), bos=bos, eos=eos)


@pytest.mark.parametrize("name, compress", [("lm.arpa", True), ("lm.arpa.gz", False),
                                            ("lm.gz", True), ("lm", False)])
def test_gzip_is_told_by_content_not_name(tmp_path, arpa, name, compress):
    """A gzipped file named .arpa and a plain one named .gz both load (as in KenLM)."""
    with open(arpa, "rb") as handle:
        data = handle.read()
    path = write(tmp_path / name, gzip.compress(data) if compress else data)
    assert_scores_equal_kenlm(path, random_sentences(4, 20))
    plain = NgramLM(arpa)
    assert NgramLM(path).score_sentence(["the", "cat", "sat"]) == plain.score_sentence(
        ["the", "cat", "sat"])


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.arpa"):
        NgramLM(tmp_path / "nowhere.arpa")


# ---------------------------------------------------------------- the compact cache
def tables(lm):
    return ([t.tolist() for name in NgramLM._TABLES for t in getattr(lm, name)]
            + [lm._hash_keys.tolist(), lm._hash_ids.tolist(), lm.vocab, lm.order, lm.unk,
               lm.bos, lm.eos, lm._size])


def test_the_compact_file_holds_the_same_model(tmp_path, arpa):
    """Written on the first load (named by the ARPA's SHA-256), mapped on the second:
    the same tables and KenLM's scores; a changed ARPA file is read again."""
    cache = tmp_path / "cache"
    first = NgramLM(arpa, cache=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt" and len(files[0].stem) == 64
    second = NgramLM(arpa, cache=cache)
    assert tables(second) == tables(first) == tables(NgramLM(arpa, cache=False))
    for words in random_sentences(7, count=20):
        assert second.score_sentence(words) == pytest.approx(kenlm_score(arpa, words),
                                                             abs=1e-4)
    changed = tmp_path / "changed.arpa"
    changed.write_text(open(arpa).read().replace("-0.", "-1.", 1))
    assert tables(NgramLM(changed, cache=cache)) != tables(first)
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_compact_file_is_replaced(tmp_path, arpa):
    cache = tmp_path / "cache"
    want = tables(NgramLM(arpa, cache=cache))
    (saved,) = cache.iterdir()
    for damage in (b"", b"not a torch file", saved.read_bytes()[:100]):
        saved.write_bytes(damage)
        assert tables(NgramLM(arpa, cache=cache)) == want
        assert saved.stat().st_size > 1000  # written again
    # A file of another format version, or another ARPA's tables under this one's name
    # (its own digest inside), is not trusted.
    data = torch.load(saved, weights_only=True)
    torch.save({**data, "format": 99}, saved)
    assert tables(NgramLM(arpa, cache=cache)) == want
    changed = tmp_path / "changed.arpa"
    changed.write_text(open(arpa).read().replace("-0.", "-1.", 1))
    other = tmp_path / "other"
    NgramLM(changed, cache=other)
    (foreign,) = other.iterdir()
    shutil.copyfile(foreign, saved)
    assert tables(NgramLM(arpa, cache=cache)) == want


def test_cache_auto_only_for_large_files(tmp_path, arpa, monkeypatch):
    monkeypatch.setenv("SEQ_LOSS_UTIL_CACHE", str(tmp_path / "home"))
    NgramLM(arpa)  # a few hundred bytes: not cached
    assert not (tmp_path / "home").exists()
    monkeypatch.setattr(NgramLM, "CACHE_FROM_BYTES", 10)
    NgramLM(arpa)
    assert len(list((tmp_path / "home" / "lm").iterdir())) == 1
    with pytest.raises(TypeError, match="cache must be 'auto', True, False or a folder"):
        NgramLM(arpa, cache=3)
    unwritable = tmp_path / "file-not-folder"
    unwritable.write_text("")
    assert tables(NgramLM(arpa, cache=unwritable)) == tables(NgramLM(arpa, cache=False))


def test_prefix_hashes_are_the_string_hashes():
    """Column by column over the words, every word's hash and every prefix's, as
    string_hash gives them one at a time: non-ASCII text, one-letter and long words."""
    rng = random.Random(3)
    words = ["HELLO", "A", "h\u00e9llo", "\u65e5\u672c\u8a9e", "x" * 40, "\u2581the"] + [
        "".join(rng.choice("ABCDEFG'") for _ in range(rng.randint(1, 15))) for _ in range(300)]
    hashes, prefixes = prefix_hashes(words)
    assert hashes.tolist() == [string_hash(w) for w in words]
    assert sorted(prefixes.tolist()) == sorted(
        string_hash(w[:n]) for w in words for n in range(1, len(w) + 1))
    assert [x.size for x in prefix_hashes([])] == [0, 0]
