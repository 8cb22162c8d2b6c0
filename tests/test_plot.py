"""ctc_plot draws the numbers it is given: the lattice's heatmaps are alpha, beta and
the posterior, its path is forced_align's, the alignment figure's path and token spans
are forced_align's and alignment_segments'. Needs the 'plot' extra (matplotlib)."""
import numpy as np
import torch

import seq_loss_util as S
from optional_deps import require

require({"matplotlib": "3.7"}, "plot")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import ctc_plot  # noqa: E402

TOKENS = ["-", "a", "b", "c"]


def example():
    g = torch.Generator().manual_seed(3)
    frames = [0, 3, 3, 0, 1, 1, 0, 2, 2, 0, 2, 0]
    logits = torch.randn(2, len(frames), 4, generator=g)
    logits[0, torch.arange(len(frames)), torch.tensor(frames)] += 4.0
    labels = torch.tensor([[3, 1, 2, 2], [1, 2, -100, -100]])
    return logits, labels


def test_lattice_numbers():
    logits, labels = example()
    lat = ctc_plot.lattice(logits, labels, tokens=TOKENS)
    assert lat.states == ["-", "c", "-", "a", "-", "b", "-", "b", "-"]
    torch.testing.assert_close(lat.posterior.sum(1), torch.ones(12, dtype=torch.float64))
    # The posterior per frame equals the per-frame class posterior that
    # alignment_targets gives (summed over each class's states).
    targets = S.alignment_targets(logits.double(), labels)[0]  # (T, C)
    aug = [0, 3, 0, 1, 0, 2, 0, 2, 0]
    by_class = torch.zeros(12, 4, dtype=torch.float64).index_add_(
        1, torch.tensor(aug), lat.posterior)
    torch.testing.assert_close(by_class, targets.double(), atol=1e-6, rtol=0)
    assert lat.path.tolist() == S.forced_align(logits, labels).states[0].tolist()
    # The max of each frame's alpha and beta is 0 (renormalised per frame).
    assert torch.allclose(lat.log_alpha.max(1).values, torch.zeros(12, dtype=torch.float64))


def test_lattice_figure_draws_them():
    logits, labels = example()
    fig = ctc_plot.plot_lattice(logits, labels, example=1, tokens=TOKENS)
    lat = ctc_plot.lattice(logits, labels, example=1, tokens=TOKENS)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    np.testing.assert_allclose(images[2], lat.posterior.T.numpy())
    np.testing.assert_allclose(images[0], lat.log_alpha.clamp(min=-30).T.numpy())
    (line,) = fig.axes[2].lines
    assert line.get_ydata().tolist() == lat.path.tolist()
    assert line.get_xdata().tolist() == list(range(12))
    labels_drawn = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels_drawn == ["0 -", "1 a", "2 -", "3 b", "4 -"]


def test_alignment_figure_draws_path_and_segments():
    logits, labels = example()
    fig = ctc_plot.plot_alignment(logits, labels, tokens=TOKENS)
    align = S.forced_align(logits, labels)
    top = fig.axes[0]
    (bottom,) = [ax for ax in fig.axes if ax.get_title().startswith("token segments")]
    (line,) = top.lines
    assert line.get_ydata().tolist() == align.labels[0].tolist()
    segments = S.alignment_segments(align, 0)
    spans = [(round(p.get_x() + 0.5), round(p.get_x() + p.get_width() + 0.5))
             for p in bottom.patches]
    assert spans == [(s.start, s.end) for s in segments]
    assert [t.get_text() for t in bottom.texts] == [TOKENS[s.label] for s in segments]


def test_long_alignment_figure_draws_segments_confidence_and_gaps():
    """align_long's segments on a planted recording with a sentence that is not in the
    audio: the bars are the segments' spans and confidences (the missing one red, under
    the threshold), the track's grey runs are the frames outside every segment, and the
    untranscribed stretches (300, 200, 250 frames) are labelled with their length."""
    import pytest
    from optional_deps import need_c_kernel
    from test_long_align import JUNK, recording

    from ctc_long_align import AlignedSegment, align_long

    need_c_kernel()
    log_probs, segs, _ = recording(2)
    wrong = torch.randint(1, JUNK, (15,), generator=torch.Generator().manual_seed(99)).tolist()
    found = align_long(log_probs, segs[:5] + [wrong] + segs[5:], width=64)
    frames = log_probs.shape[0]
    fig = ctc_plot.plot_long_alignment(found, num_frames=frames, frame_duration=0.02,
                                       threshold=-1.0, long_gap=150)
    top, bottom = fig.axes
    bars = top.patches
    np.testing.assert_allclose([b.get_x() for b in bars], [s.start * 0.02 for s in found])
    np.testing.assert_allclose([b.get_width() for b in bars],
                               [(s.end - s.start) * 0.02 for s in found])
    np.testing.assert_allclose([b.get_height() for b in bars], [s.score for s in found])
    red = [i for i, b in enumerate(bars) if b.get_facecolor()[0] > 0.8]
    assert red == [5]  # only the sentence that is not in the audio
    gaps = ctc_plot.long_alignment_gaps(found, frames)
    assert gaps[0] == (0, found[0].start) and gaps[-1] == (found[-1].end, frames)
    assert sum(b - a for a, b in gaps) + sum(s.end - s.start for s in found) == frames
    spans = sorted((round(p.get_x() / 0.02), round((p.get_x() + p.get_width()) / 0.02))
                   for p in bottom.patches)
    assert spans == sorted(gaps + [(s.start, s.end) for s in found])
    labelled = [t.get_text() for t in bottom.texts]
    assert len(labelled) == 3 and all(t.endswith(" s") for t in labelled), labelled
    assert float(labelled[0].split()[0]) == pytest.approx(found[0].start * 0.02, abs=0.01)
    assert sorted(b - a for a, b in gaps)[-3] >= 200  # the three stretches, and no more
    assert sorted(b - a for a, b in gaps)[-4] < 150
    # In frames where no frame duration is given; a segment past the end is refused.
    fig = ctc_plot.plot_long_alignment(found, num_frames=frames)
    assert fig.axes[1].get_xlabel() == "frame"
    late = [AlignedSegment(0, 5, frames + 1, 0.0, 0.0, -0.1, [])]
    with pytest.raises(ValueError, match="ends past num_frames"):
        ctc_plot.plot_long_alignment(late, num_frames=frames)


def test_the_core_module_never_imports_matplotlib():
    import subprocess
    import sys

    code = ("import sys, seq_loss_util, ctc_decoder, ngram_lm; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
