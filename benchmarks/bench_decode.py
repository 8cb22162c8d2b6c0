"""Speed and agreement of ctc_decoder's prefix beam search against pyctcdecode, and
greedy decoding, on one batch of wav2vec2-like outputs.

    python benchmarks/bench_decode.py [--batch 32] [--frames 500] [--beams 32 100]
                                      [--repeats 5] [--device cpu|cuda] [--smoke]

The outputs are made here (no model, no download): sentences drawn from a small word
list, spelled with wav2vec2's 32-character vocabulary, each character held for a few
frames with blanks between, with noise and, at one character in ten, a confusable
rival close behind (a model's near-ties). A word 3-gram ARPA model is estimated from
the sentences' "training transcripts" (the sentences themselves and as many others)
with ``ngram_lm.write_arpa``, and both decoders read the same file: ours through
``ngram_lm``, pyctcdecode through kenlm.

For each beam width: time (median of the repeats; a shared machine varies from run to
run), pyctcdecode's time over ours (the speed-up), how often the top hypothesis spells
the same text as pyctcdecode's, and each one's word error rate against the sentences
spoken. pyctcdecode runs with its defaults (it does not append tokens below
log-probability -5 and drops beams 10 below the best), one utterance after the other, as
its ``decode`` does. Ours runs the batch at once, twice: with its defaults (no pruning
but the beam) and with pyctcdecode's two settings (``token_min_logp=-5,
beam_threshold=10``), which is the row the goal is read on: at least 10x without the LM
and 5x with it, on this 2-core CPU. On CUDA the goal is ours within 3x of greedy
decoding's time.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ctc_decoder  # noqa: E402
from ngram_lm import write_arpa  # noqa: E402

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R",
         "D", "L", "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q",
         "Z"]
WORDS = ("THE A OF TO AND IN THAT IS WAS HE FOR IT WITH AS HIS ON BE AT BY HAD NOT ARE BUT "
         "FROM OR HAVE AN THEY WHICH ONE YOU WERE HER ALL SHE THERE WOULD THEIR WE HIM BEEN "
         "HAS WHEN WHO WILL MORE NO IF OUT SO SAID WHAT UP ITS ABOUT INTO THAN THEM CAN ONLY "
         "OTHER NEW SOME COULD TIME THESE TWO MAY THEN DO FIRST ANY MY NOW SUCH LIKE OUR OVER "
         "MAN ME EVEN MOST MADE AFTER ALSO DID MANY BEFORE MUST THROUGH BACK YEARS WHERE MUCH "
         "YOUR WAY WELL DOWN SHOULD BECAUSE EACH JUST THOSE PEOPLE HOW TOO LITTLE STATE GOOD "
         "VERY MAKE WORLD STILL OWN SEE MEN WORK LONG GET HERE BETWEEN BOTH LIFE BEING UNDER "
         "NEVER DAY SAME ANOTHER KNOW WHILE LAST MIGHT US GREAT OLD YEAR OFF COME SINCE AGAINST "
         "GO CAME RIGHT USED TAKE THREE").split()
RIVALS = {"E": "A", "A": "E", "O": "U", "U": "O", "I": "E", "N": "M", "M": "N", "T": "D",
          "D": "T", "S": "Z", "R": "L", "L": "R", "B": "P", "P": "B", "C": "K", "K": "C"}


def sentences(rng, count):
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
            for _ in range(count)]


def emissions(texts, frames, rng, generator):
    """``(B, frames, 32)`` logits saying ``texts`` and their frame lengths (about
    ``frames``): each character for one or two frames, then blanks (about 50 frames a
    second for 15 characters a second, as wav2vec2)."""
    batch = len(texts)
    logits = torch.randn(batch, frames, len(VOCAB), generator=generator) * 0.8
    logits[:, :, 0] += 9.0  # blank wherever no character is said
    lengths = []
    for b, text in enumerate(texts):
        chars = text.replace(" ", "|")
        used = rng.randint(frames * 9 // 10, frames)
        step = used / (len(chars) + 1)
        for i, ch in enumerate(chars):
            t = int((i + 0.5) * step)
            token = VOCAB.index(ch)
            rival = VOCAB.index(RIVALS[ch]) if ch in RIVALS and rng.random() < 0.1 else None
            for dt in range(rng.randint(1, 2)):
                logits[b, t + dt, 0] -= 9.0
                logits[b, t + dt, token] += 9.0
                if rival is not None:
                    logits[b, t + dt, rival] += 8.7
        lengths.append(used)
    return logits, torch.tensor(lengths)


def wer(hyps, refs):
    import numpy as np

    errors = words = 0
    for hyp, ref in zip(hyps, refs, strict=True):
        h, r = hyp.split(), ref.split()
        d = np.arange(len(h) + 1)
        for i in range(1, len(r) + 1):
            prev, d[0] = d.copy(), i
            for j in range(1, len(h) + 1):
                d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
        errors, words = errors + int(d[len(h)]), words + len(r)
    return errors / max(words, 1)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--beams", type=int, nargs="+", default=[32, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.frames, args.beams, args.repeats = 3, 120, [4], 1
    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    spoken = sentences(rng, args.batch)
    logits, lengths = emissions(spoken, args.frames, rng, generator)
    logits, lengths = logits.to(args.device), lengths.to(args.device)
    workdir = tempfile.mkdtemp(prefix="bench_decode_")
    arpa = write_arpa(spoken + sentences(rng, args.batch * 4), os.path.join(workdir, "lm.arpa"),
                      order=3)
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        build_ctcdecoder = None
        print("pyctcdecode is not installed (make bench-decode installs it): its rows are "
              "skipped")
    print(f"batch {args.batch}, frames up to {args.frames} (mean "
          f"{float(lengths.float().mean()):.0f}), {len(VOCAB)} classes, device {args.device}, "
          f"torch threads {torch.get_num_threads()}; LM: 3-gram ARPA, weight "
          f"{args.lm_weight}")

    t_greedy, greedy = timed(lambda: ctc_decoder.greedy_decode(logits, lengths), args.repeats,
                             args.device)
    greedy_text = ["".join(VOCAB[i] for i in row if i >= 0).replace("|", " ").split()
                   for row in greedy.tolist()]
    greedy_text = [" ".join(words) for words in greedy_text]
    print(f"\n{'decoder':34s} {'beam':>5s} {'time s':>8s} {'speed-up':>7s} {'same top':>9s} "
          f"{'WER':>6s}  goal (speed-up over pyctcdecode at its settings)")
    print(f"{'greedy (ours)':34s} {'':>5s} {t_greedy:8.3f} {'':>7s} {'':>9s} "
          f"{wer(greedy_text, spoken):6.3f}")
    lp_numpy = [logits[b, :lengths[b]].float().log_softmax(-1).cpu().numpy()
                for b in range(args.batch)]
    failed = False
    # pyctcdecode's defaults: tokens below log-probability -5 are not appended, and
    # beams 10 below the best are dropped. Ours has them as options, off by default.
    pruning = dict(token_min_logp=-5.0, beam_threshold=10.0)
    for beam in args.beams:
        for with_lm in (False, True):
            options = dict(lm=arpa, lm_weight=args.lm_weight) if with_lm else {}
            results = {}
            for name, extra in (("ours", {}), ("ours, pyctcdecode's pruning", pruning)):
                decoder = ctc_decoder.CtcBeamSearchDecoder(VOCAB, beam_size=beam, **options,
                                                           **extra)
                decoder(logits[:1, :10])  # first-use set-up (tables) is not timed
                seconds, found = timed(lambda decoder=decoder: decoder(logits, lengths),
                                       args.repeats, args.device)
                results[name] = (seconds, [hyps[0].text for hyps in found])
            suffix = " + LM" if with_lm else ""
            if build_ctcdecoder is None:
                for name, (seconds, texts) in results.items():
                    print(f"{name + suffix:34s} {beam:5d} {seconds:8.3f} {'':>7s} {'':>9s} "
                          f"{wer(texts, spoken):6.3f}")
                continue
            # Its alphabet: "" for the blank, " " for the delimiter, the rest as ours.
            labels = ["", *VOCAB[1:4], " ", *VOCAB[5:]]
            theirs_decoder = build_ctcdecoder(
                labels, kenlm_model_path=arpa if with_lm else None, alpha=args.lm_weight,
                beta=0.0)
            t_theirs, theirs = timed(
                lambda run=theirs_decoder, width=beam: [run.decode(lp, beam_width=width)
                                                        for lp in lp_numpy],
                args.repeats, "cpu")
            theirs_text = [" ".join(t.split()) for t in theirs]
            goal = 5.0 if with_lm else 10.0
            for name, (seconds, texts) in results.items():
                same = sum(a == b for a, b in zip(texts, theirs_text, strict=True)) / args.batch
                ratio = t_theirs / seconds
                verdict = ""
                if "pruning" in name:  # the goal: the same settings as pyctcdecode's
                    verdict = f">= {goal:.0f}x {'met' if ratio >= goal else 'NOT met'}"
                    failed |= ratio < goal and not args.smoke
                print(f"{name + suffix:34s} {beam:5d} {seconds:8.3f} {ratio:6.1f}x "
                      f"{same:9.0%} {wer(texts, spoken):6.3f}  {verdict}")
            print(f"{'pyctcdecode' + (' + LM (kenlm)' if with_lm else ''):34s} {beam:5d} "
                  f"{t_theirs:8.3f} {'1.0x':>7s} {'':>9s} {wer(theirs_text, spoken):6.3f}")
    if args.device == "cuda":
        print(f"\nCUDA goal: ours within 3x of greedy decoding ({t_greedy:.3f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
