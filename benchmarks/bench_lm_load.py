"""Loading a large word n-gram LM: ngram_lm.NgramLM against KenLM, time and memory.

    python benchmarks/bench_lm_load.py [--unigrams 100000] [--bigrams 2000000]
                                       [--trigrams 1000000] [--smoke]

Builds a synthetic ARPA file of the given size (the defaults are about 110 MB, what a
3-gram for a small speech corpus weighs), then, each in a fresh process so that the
peak memory (``VmHWM``, less what the process held after its imports: torch alone is
about 0.2 GB) is its own: KenLM's ``kenlm.Model`` (its default probing
structure), ours reading the ARPA file (the first load, which also writes the compact
file), ours mapping the compact file (every later load), and a decoder's first call
with that model (its tables of known words and continuations). The compact files go to
a temporary folder, deleted at the end.

Goals (exit status 1 when one is not met, except with ``--smoke``): a load from the
compact file under 1 s, and the decoder's first-call set-up under 1 s. The first load's
time and memory against KenLM's are printed, not judged: reading the text is Python's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LETTERS = "ETAOINSHRDLUCMWFGYPBVKJXQZ"


def write_synthetic_arpa(path, unigrams: int, bigrams: int, trigrams: int, seed: int = 0):
    """A valid 3-gram ARPA file (KenLM loads it) with random words and log10 values:
    each trigram extends a listed bigram, as KenLM's probing model requires."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < unigrams - 3:
        words.add("".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 12))))
    vocab = sorted(words)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < bigrams:
        pairs.add((rng.randrange(len(vocab)), rng.randrange(len(vocab))))
    pair_list = list(pairs)
    triples: set[tuple[int, int, int]] = set()
    while len(triples) < trigrams:
        a, b = pair_list[rng.randrange(len(pair_list))]
        triples.add((a, b, rng.randrange(len(vocab))))
    with open(path, "w") as f:
        f.write(f"\\data\\\nngram 1={unigrams}\nngram 2={bigrams}\nngram 3={trigrams}\n\n")
        f.write("\\1-grams:\n-99\t<s>\t-0.5\n-1.5\t</s>\n-6.0\t<unk>\n")
        for w in vocab:
            f.write(f"{-rng.uniform(3, 7):.6f}\t{w}\t{-rng.uniform(0, 1):.6f}\n")
        f.write("\n\\2-grams:\n")
        for a, b in pair_list:
            f.write(f"{-rng.uniform(1, 4):.6f}\t{vocab[a]} {vocab[b]}\t"
                    f"{-rng.uniform(0, 1):.6f}\n")
        f.write("\n\\3-grams:\n")
        for a, b, c in triples:
            f.write(f"{-rng.uniform(0.5, 3):.6f}\t{vocab[a]} {vocab[b]} {vocab[c]}\n")
        f.write("\n\\end\\\n")


# Run in a child process: prints one JSON line {"seconds": ..., "maxrss_gb": ...}.
CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
what, path, cache = sys.argv[2], sys.argv[3], sys.argv[4]
result = {}
def peak():
    # VmHWM: this process's own peak. ru_maxrss keeps the forking parent's peak across
    # exec on Linux (0.49 GB here, after writing the ARPA file), which hid KenLM's.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
if what == "kenlm":
    import kenlm
    result["base_gb"] = peak()
    start = time.perf_counter()
    kenlm.Model(path)
    result["seconds"] = time.perf_counter() - start
else:
    import torch
    from ngram_lm import NgramLM
    if what == "first call":
        import ctc_decoder
        from _seq_loss_kernels import cpu
        cpu.backend()  # the C kernel loaded (or built) before the clock starts
    result["base_gb"] = peak()
    start = time.perf_counter()
    lm = NgramLM(path, cache=cache)
    result["seconds"] = time.perf_counter() - start
    if what == "first call":
        decoder = ctc_decoder.CtcBeamSearchDecoder(["<b>", "|"] + list(sys.argv[5]), lm=lm)
        logits = torch.randn(1, 50, len(sys.argv[5]) + 2, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        decoder(logits)
        result["seconds"] = time.perf_counter() - start
result["maxrss_gb"] = peak() - result["base_gb"]
print(json.dumps(result))
"""


def measure(what: str, path: str, cache: str) -> dict | None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), what, path, cache, LETTERS],
                          capture_output=True, text=True)
    if done.returncode:
        if what == "kenlm" and "No module named 'kenlm'" in done.stderr:
            return None
        raise RuntimeError(f"{what}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unigrams", type=int, default=100_000)
    parser.add_argument("--bigrams", type=int, default=2_000_000)
    parser.add_argument("--trigrams", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="a tiny model")
    args = parser.parse_args(argv)
    if args.smoke:
        args.unigrams, args.bigrams, args.trigrams = 300, 2000, 1000
    work = tempfile.mkdtemp(prefix="bench_lm_load_")
    try:
        arpa = os.path.join(work, "lm.arpa")
        cache = os.path.join(work, "cache")
        write_synthetic_arpa(arpa, args.unigrams, args.bigrams, args.trigrams)
        size_mb = os.path.getsize(arpa) / 1e6
        print(f"ARPA: {args.unigrams} / {args.bigrams} / {args.trigrams} n-grams, "
              f"{size_mb:.0f} MB (synthetic); each row a fresh process")
        kenlm = measure("kenlm", arpa, cache)
        rows = [("KenLM kenlm.Model (probing)", kenlm),
                ("ours, reading the ARPA (writes the compact file)",
                 measure("parse", arpa, cache)),
                ("ours, mapping the compact file", measure("cached", arpa, cache)),
                ("a decoder's first call (compact file)", measure("first call", arpa, cache))]
        print(f"\n{'':52s} {'time s':>8s} {'x KenLM':>8s} {'+peak MB':>8s} {'x KenLM':>8s}")
        for name, row in rows:
            if row is None:
                print(f"{name:52s} (kenlm is not installed)")
                continue
            ratio = (f"{row['seconds'] / kenlm['seconds']:7.1f}x"
                     if kenlm and kenlm["seconds"] > 0 else "")
            mem = (f"{row['maxrss_gb'] / kenlm['maxrss_gb']:7.1f}x"
                   if kenlm and kenlm["maxrss_gb"] > 0 else "")
            print(f"{name:52s} {row['seconds']:8.2f} {ratio:>8s} {row['maxrss_gb'] * 1024:8.0f} "
                  f"{mem:>8s}")
        cached, first = rows[2][1], rows[3][1]
        failed = False
        for text, seconds in (("compact load < 1 s", cached["seconds"]),
                              ("first-call set-up < 1 s", first["seconds"])):
            ok = seconds < 1.0
            failed |= not ok and not args.smoke
            print(f"goal: {text}: {seconds:.2f} s, {'met' if ok else 'NOT met'}")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
