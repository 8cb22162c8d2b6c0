"""Pictures of CTC, drawn from seq_loss_util's own numbers (matplotlib, the ``plot``
extra: ``pip install ".[plot]"``; nothing else in the package imports it).

* :func:`lattice` / :func:`plot_lattice`: one example's log alpha, log beta and state
  posterior as heatmaps over (frame, blank-augmented state), the states labelled with
  their tokens, and the Viterbi path over the posterior. The numbers are the course's
  functions' (``label_trans_table``, ``calculate_log_label_prob``,
  ``calculate_alpha_beta``): alpha and beta renormalised per frame, as the original.
* :func:`plot_alignment`: the emission matrix (log-probabilities over frame and
  class) with the ``forced_align`` path drawn over it and the token segments of
  ``alignment_segments`` marked and labelled, as torchaudio's alignment tutorial
  draws them.
* :func:`plot_long_alignment`: ``ctc_long_align.align_long``'s segments over the
  recording's time, each a bar as high as its confidence (below ``threshold`` in red),
  and a track of the segments with the stretches between them (the wildcard's, or
  pauses) marked, the long ones labelled with their length.

Each plot function returns the ``matplotlib.figure.Figure``; the data it draws come
from :func:`lattice` and ``forced_align``, so tests check those numbers in the figure.
"""
from __future__ import annotations

from typing import NamedTuple
from collections.abc import Sequence

import torch

import seq_loss_util as S

__all__ = ["Lattice", "lattice", "plot_lattice", "plot_alignment", "long_alignment_gaps",
           "plot_long_alignment"]


class Lattice(NamedTuple):
    """One example's CTC lattice: ``log_alpha``, ``log_beta`` and ``posterior`` are
    ``(T_b, L_b)`` (frames by blank-augmented states), ``path`` the Viterbi state at
    each frame ``(T_b,)``, ``states`` each state's name (its token)."""
    log_alpha: torch.Tensor
    log_beta: torch.Tensor
    posterior: torch.Tensor
    path: torch.Tensor
    states: list


def _names(ids: Sequence[int], tokens: Sequence[str] | None, blank: int) -> list:
    named = []
    for i in ids:
        if tokens is not None:
            named.append(tokens[i])
        else:
            named.append("-" if i == blank else str(i))
    return named


def lattice(logits: torch.Tensor, labels: torch.Tensor, *, example: int = 0, blank: int = 0,
            logits_len=None, labels_len=None, tokens: Sequence[str] | None = None) -> Lattice:
    """The lattice of ``example`` in a batch: ``logits`` ``(B, T, C)``, ``labels``
    ``(B, U)`` raw class ids padded with negative ids (or cut by ``labels_len``), as
    ``CtcLossModule`` takes them. Computed in float64."""
    logits = logits.detach().double().cpu()
    batch, frames, _ = logits.shape
    align = S.forced_align(logits, labels, logits_len, labels_len, blank=blank)
    aug, aug_len, _, frames_of, _ = S._prepare_batch_first(
        logits, labels, logits_len, labels_len, blank, False)
    table = S.label_trans_table(aug, aug_len)
    log_label = S.calculate_log_label_prob(aug, logits.softmax(-1))  # takes probabilities
    alpha, beta, _ = S.calculate_alpha_beta(table, log_label, aug_len, frames_of)
    t_b, l_b = int(frames_of[example]), int(aug_len[example])
    log_alpha = alpha[example, :t_b, :l_b]
    log_beta = beta[example, :t_b, :l_b]
    # alpha includes frame t's emission and beta does not (the original's convention):
    # their sum is the log posterior of the state, up to a per-frame constant.
    gamma = log_alpha + log_beta
    posterior = (gamma - gamma.logsumexp(dim=1, keepdim=True)).exp()
    names = _names(aug[example, :l_b].tolist(), tokens, blank)
    return Lattice(log_alpha, log_beta, posterior, align.states[example, :t_b].clone(), names)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - message only
        raise ImportError("plotting needs matplotlib: pip install '.[plot]' "
                          "(or pip install matplotlib)") from e
    return plt


def plot_lattice(logits: torch.Tensor, labels: torch.Tensor, *, example: int = 0,
                 blank: int = 0, logits_len=None, labels_len=None,
                 tokens: Sequence[str] | None = None, title: str | None = None):
    """Three heatmaps over (frame, state): log alpha, log beta, and the state posterior
    with the Viterbi path drawn over it (white line, one point per frame)."""
    plt = _pyplot()
    data = lattice(logits, labels, example=example, blank=blank, logits_len=logits_len,
                   labels_len=labels_len, tokens=tokens)
    frames, states = data.posterior.shape
    fig, axes = plt.subplots(1, 3, figsize=(4 + 0.16 * frames * 3, 1.5 + 0.28 * states),
                             sharey=True, constrained_layout=True)
    floor = -30.0  # log alpha / beta below this are drawn as this (the colour scale)
    panels = [("log alpha (per-frame max 0)", data.log_alpha.clamp(min=floor), "viridis"),
              ("log beta (per-frame max 0)", data.log_beta.clamp(min=floor), "viridis"),
              ("state posterior and Viterbi path", data.posterior, "magma")]
    for ax, (name, values, cmap) in zip(axes, panels, strict=True):
        image = ax.imshow(values.T.numpy(), aspect="auto", origin="lower", cmap=cmap,
                          interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("frame")
        fig.colorbar(image, ax=ax, shrink=0.8)
    axes[0].set_yticks(range(states))
    axes[0].set_yticklabels([f"{s} {n}" for s, n in enumerate(data.states)], fontsize=7)
    axes[0].set_ylabel("state (blank-augmented)")
    axes[2].plot(range(frames), data.path.tolist(), color="white", linewidth=1.5,
                 marker="o", markersize=2, label="Viterbi path")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_alignment(logits: torch.Tensor, labels: torch.Tensor, *, example: int = 0,
                   blank: int = 0, logits_len=None, labels_len=None,
                   tokens: Sequence[str] | None = None, title: str | None = None):
    """The emission matrix (log-probabilities, class by frame) with the forced
    alignment's path over it, and each token's segment as a labelled span below."""
    plt = _pyplot()
    log_probs = logits.detach().double().cpu().log_softmax(-1)
    align = S.forced_align(logits.detach().cpu(), labels, logits_len, labels_len, blank=blank)
    frames = int((align.states[example] >= 0).sum())
    if logits_len is not None:
        frames = int(torch.as_tensor(logits_len)[example])
    emission = log_probs[example, :frames]  # (T_b, C)
    classes = emission.shape[1]
    path = align.labels[example, :frames]
    segments = S.alignment_segments(align, example)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(3 + 0.2 * frames, 2.5 + 0.22 * classes), sharex=True,
        gridspec_kw={"height_ratios": [4, 1]}, constrained_layout=True)
    image = top.imshow(emission.T.clamp(min=-20).numpy(), aspect="auto", origin="lower",
                       cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=top, shrink=0.8, label="log-probability")
    top.plot(range(frames), path.tolist(), color="red", linewidth=1.2, marker=".",
             markersize=3, label="forced alignment")
    top.set_yticks(range(classes))
    top.set_yticklabels(_names(range(classes), tokens, blank), fontsize=7)
    top.set_ylabel("class")
    top.legend(loc="upper right", fontsize=7)
    for segment in segments:
        name = _names([segment.label], tokens, blank)[0]
        bottom.axvspan(segment.start - 0.5, segment.end - 0.5, color="tab:orange", alpha=0.5)
        bottom.text((segment.start + segment.end - 1) / 2, 0.5, name, ha="center",
                    va="center", fontsize=8)
    bottom.set_yticks([])
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("frame")
    bottom.set_title("token segments (alignment_segments)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def long_alignment_gaps(segments, num_frames: int) -> list:
    """The frames outside every segment of ``align_long``'s result, as ``(start, end)``
    runs: before the first, between two, after the last (the path is at a wildcard gap
    state there, on the wildcard or the blank)."""
    gaps, at = [], 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start > at:
            gaps.append((at, seg.start))
        at = max(at, seg.end)
    if num_frames > at:
        gaps.append((at, num_frames))
    return gaps


def plot_long_alignment(segments, *, num_frames: int, frame_duration: float | None = None,
                        threshold: float | None = None, long_gap: int = 250,
                        title: str | None = None):
    """``align_long``'s segments over the recording: above, each segment a bar from its
    start to its end as high as its confidence (0 at the top; red where below
    ``threshold``, the line drawn); below, a track of the segments (blue) and the runs
    outside them (grey, hatched), those of ``long_gap`` frames or more labelled with
    their length. Time in seconds where ``frame_duration`` is given, else frames."""
    plt = _pyplot()
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if any(s.end > num_frames for s in segments):
        raise ValueError(f"a segment ends past num_frames ({num_frames}): pass the "
                         "recording's frame count")
    step = 1.0 if frame_duration is None else float(frame_duration)
    unit = "frame" if frame_duration is None else "s"
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]},
        constrained_layout=True)
    low = [threshold is not None and s.score < threshold for s in segments]
    top.bar([s.start * step for s in segments], [s.score for s in segments],
            width=[(s.end - s.start) * step for s in segments], align="edge",
            color=["tab:red" if x else "tab:blue" for x in low], linewidth=0)
    if threshold is not None:
        top.axhline(threshold, color="tab:red", linestyle="--", linewidth=1,
                    label=f"threshold {threshold:g} ({sum(low)} below)")
        top.legend(loc="lower right", fontsize=8)
    top.set_ylabel("confidence (0 best)")
    top.set_title("segments: confidence (lowest mean over windows of log p(aligned) - "
                  "max log p)", fontsize=9)
    for seg in segments:
        bottom.axvspan(seg.start * step, seg.end * step, color="tab:blue", alpha=0.6,
                       linewidth=0)
    for a, b in long_alignment_gaps(segments, num_frames):
        bottom.axvspan(a * step, b * step, facecolor="0.85", hatch="//", edgecolor="0.5",
                       linewidth=0)
        if b - a >= long_gap:
            bottom.text((a + b) / 2 * step, 0.5, f"{(b - a) * step:.3g} {unit}",
                        ha="center", va="center", fontsize=8)
    bottom.set_yticks([])
    bottom.set_ylim(0, 1)
    bottom.set_xlim(0, num_frames * step)
    bottom.set_xlabel("time (s)" if frame_duration is not None else "frame")
    bottom.set_title("segments (blue) and the frames outside them: wildcard or pause "
                     "(grey)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
