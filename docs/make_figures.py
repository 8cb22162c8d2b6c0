"""Regenerates the guide's figures (docs/figures/*.png) from a small example:

    python docs/make_figures.py        (or: make figures)

A made-up utterance "c a b b" over 18 frames with a 4-class vocabulary (the blank
"-", then a, b, c): peaky model-like logits with noise, drawn with ctc_plot.
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
    print(f"wrote {out / 'lattice.png'} and {out / 'alignment.png'}")


if __name__ == "__main__":
    main()
