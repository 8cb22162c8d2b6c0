"""Regenerates the guide's figures (docs/figures/*.png) from a small example:

    python docs/make_figures.py        (or: make figures)

A made-up utterance "c a b b" over 18 frames with a 4-class vocabulary (the blank
"-", then a, b, c): peaky model-like logits with noise, drawn with ctc_plot. And a
made-up recording of about 4 minutes for ``align_long``: 60 segments of random letters
(classes 1-8) with untranscribed speech (classes 9-11) of 20 s, 30 s and 15 s at the
start, middle and end, and one segment in the transcript that is not in the audio.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ctc_plot  # noqa: E402

TOKENS = ["-", "a", "b", "c"]
FRAMES = [0, 3, 3, 0, 1, 1, 1, 0, 2, 2, 0, 0, 2, 2, 2, 0, 0, 0]  # - c c - a a a - b b ...


def example():
    """``(logits (1, 18, 4), labels (1, 4))``: the utterance, seeded."""
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(1, len(FRAMES), len(TOKENS), generator=g)
    logits[0, torch.arange(len(FRAMES)), torch.tensor(FRAMES)] += 4.0
    return logits, torch.tensor([[3, 1, 2, 2]])


def main() -> None:
    out = Path(__file__).resolve().parent / "figures"
    out.mkdir(exist_ok=True)
    logits, labels = example()
    fig = ctc_plot.plot_lattice(logits, labels, tokens=TOKENS,
                                title='The lattice of "c a b b": alpha, beta, posterior')
    fig.savefig(out / "lattice.png", dpi=90)
    fig = ctc_plot.plot_alignment(logits, labels, tokens=TOKENS,
                                  title='Forced alignment of "c a b b"')
    fig.savefig(out / "alignment.png", dpi=90)
    found, frames = long_recording()
    fig = ctc_plot.plot_long_alignment(found, num_frames=frames, frame_duration=0.02,
                                       threshold=-1.0,
                                       title=f"align_long: {frames * 0.02 / 60:.1f} minutes, "
                                             f"{len(found)} segments, one not in the audio")
    fig.savefig(out / "long_alignment.png", dpi=80)
    print(f"wrote {out / 'lattice.png'}, {out / 'alignment.png'} and "
          f"{out / 'long_alignment.png'}")


def long_recording():
    """``align_long``'s segments on the made-up recording, and its frame count."""
    from ctc_long_align import align_long

    g = torch.Generator().manual_seed(5)
    frames, segments = [], []

    def untranscribed(seconds):
        frames.extend(torch.randint(9, 12, (int(seconds * 50),), generator=g).tolist())

    untranscribed(20)
    for k in range(60):
        seg = torch.randint(1, 9, (int(torch.randint(20, 60, (1,), generator=g)),),
                            generator=g).tolist()
        for i, token in enumerate(seg):
            if i and seg[i - 1] == token:
                frames.append(0)
            frames += [token] * int(torch.randint(1, 3, (1,), generator=g))
            frames += [0] * int(torch.randint(0, 3, (1,), generator=g))
        frames += [0] * int(torch.randint(10, 40, (1,), generator=g))
        segments.append(seg)
        if k == 29:
            untranscribed(30)
    untranscribed(15)
    x = 1.5 * torch.randn(len(frames), 12, generator=g)
    x[torch.arange(len(frames)), torch.tensor(frames)] += 6.0
    missing = torch.randint(1, 9, (40,), generator=g).tolist()
    transcript = segments[:45] + [missing] + segments[45:]
    return align_long(torch.log_softmax(x, 1), transcript, frame_duration=0.02), len(frames)


if __name__ == "__main__":
    main()
