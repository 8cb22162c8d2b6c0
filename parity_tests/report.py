"""The comparison as a page to look at: ``python -m parity_tests.compare --report DIR``
writes ``DIR/index.html``, self-contained (images embedded as PNG data, no network).

It holds the table the command prints, a chart of each case's errors (port and TF
against the float64 truth), and for the case with the largest port gradient error,
on its worst example: each side's gradient difference to the truth over (frame,
class), and the forward and backward variables (``calculate_alpha_beta``) of both
sides with their difference over (frame, state). A student sees where TF and the port
part: at the padding, at the last frames, on the blank.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

LOG_0 = -706.0  # entries at or below this are the original's log(0) stand-ins


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _heatmaps(panels, xlabel, ylabel, title):
    """One row of heatmaps: ``panels`` is ``[(name, (rows, cols) array, cmap)]``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4),
                             constrained_layout=True)
    for ax, (name, values, cmap) in zip(np.atleast_1d(axes), panels, strict=True):
        image = ax.imshow(values.T, aspect="auto", origin="lower", cmap=cmap,
                          interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        fig.colorbar(image, ax=ax, shrink=0.85)
    fig.suptitle(title, fontsize=10)
    return fig


def _alpha_beta(module, aug, aug_len, logits, logits_len, tf=False):
    """Port (or TF) ``calculate_alpha_beta`` on one batch: NumPy (B, T, L) each."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
    if tf:
        import tensorflow as t

        args = (t.constant(aug, t.int32), t.constant(aug_len, t.int32))
        table = module.label_trans_table(*args)
        log_label = module.calculate_log_label_prob(args[0], t.constant(probs))
        alpha, beta, _ = module.calculate_alpha_beta(table, log_label, args[1],
                                                     t.constant(logits_len, t.int32))
        return alpha.numpy(), beta.numpy()
    import torch

    labels, lengths = torch.tensor(aug).long(), torch.tensor(aug_len).long()
    table = module.label_trans_table(labels, lengths)
    log_label = module.calculate_log_label_prob(labels, torch.tensor(probs))
    alpha, beta, _ = module.calculate_alpha_beta(table, log_label, lengths,
                                                 torch.tensor(logits_len).long())
    return alpha.numpy(), beta.numpy()


def worst_case_images(case, tf_runner) -> list:
    """``[(caption, base64 PNG)]`` for one case: gradients, alpha, beta."""
    import seq_loss_util as S

    from parity_tests import reference
    from parity_tests.check import port_loss_and_grad

    frames = int(np.max(case.logits_len))
    width = int(np.max(case.aug_len))
    aug, aug_len = case.aug_labels[:, :width], case.aug_len
    logits, logits_len = case.logits[:, :frames], case.logits_len
    _, grad, _ = port_loss_and_grad(case.aug_labels, case.aug_len, case.logits,
                                    case.logits_len, case.weights)
    _, true_grad = reference.ctc_batch(case.aug_labels, case.aug_len, case.logits,
                                       case.logits_len)
    true_grad = true_grad * case.weights[:, None, None]
    try:
        _, tf_grad = tf_runner.loss_and_grad(case.aug_labels, case.aug_len, case.logits,
                                             case.logits_len, case.weights)
    except Exception:  # the original raises on some inputs: show the port alone
        tf_grad = np.full_like(grad, np.nan)
    port_err = np.abs(grad - true_grad)[:, :frames]
    tf_err = np.abs(tf_grad - true_grad)[:, :frames]
    b = int(np.argmax(port_err.reshape(len(port_err), -1).max(1)))
    t_b, l_b = int(logits_len[b]), int(aug_len[b])
    images = []
    fig = _heatmaps([("port: |grad - float64 truth|", port_err[b], "magma"),
                     ("TF: |grad - float64 truth|", tf_err[b], "magma")],
                    "frame", "class", f"gradient errors, example {b} (T_b = {t_b}, "
                    f"{frames} frames shown, blank = class {int(case.blank)})")
    images.append(("Each side's gradient minus the float64 truth, over (frame, class). "
                   "Frames past T_b are padding: both should be 0 there.", _png(fig)))
    port_alpha, port_beta = _alpha_beta(S, aug, aug_len, logits, logits_len)
    try:
        tf_alpha, tf_beta = _alpha_beta(tf_runner.reference.module, aug, aug_len, logits,
                                        logits_len, tf=True)
    except Exception:
        tf_alpha = tf_beta = np.full_like(port_alpha, np.nan)
    for name, port, theirs in (("alpha", port_alpha, tf_alpha), ("beta", port_beta, tf_beta)):
        p, q = port[b, :t_b, :l_b], theirs[b, :t_b, :l_b]
        shown = [np.maximum(p, -50.0), np.maximum(q, -50.0), np.abs(p - q)]
        fig = _heatmaps([(f"port log {name}", shown[0], "viridis"),
                         (f"TF log {name}", shown[1], "viridis"),
                         ("|port - TF|", shown[2], "magma")],
                        "frame", "state", f"calculate_alpha_beta: log {name}, example {b} "
                        "(valid frames and states; below -50 drawn as -50)")
        images.append((f"log {name} of both sides and their difference, over (frame, "
                       "blank-augmented state).", _png(fig)))
    return images


def errors_chart(results) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cases = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(7, 3.2), constrained_layout=True)
    for key, label, style in (("loss_diff", "port loss", "o-"), ("tf_loss_diff", "TF loss", "o--"),
                              ("grad_diff", "port gradient", "s-"),
                              ("tf_grad_diff", "TF gradient", "s--")):
        values = np.array([getattr(r, key) for r in results], float)
        ax.semilogy(cases, np.maximum(values, 1e-12), style, label=label, markersize=4)
    ax.set_xlabel("case")
    ax.set_ylabel("max |x - float64 truth|")
    ax.set_title("each case's largest error (NaN or raised: not drawn)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def write(directory, header_lines, table_header, rows, results, cases, tf_runner) -> Path:
    """Writes ``directory/index.html``; returns its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    worst = int(np.argmax([r.grad_diff for r in results]))
    images = [("Each case's largest loss and gradient error, port and TF.",
               errors_chart(results))]
    images += worst_case_images(cases[worst], tf_runner)
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<title>seq_loss_util: the port and TF against the float64 truth</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
             "pre{background:#f4f4f4;padding:1em;overflow-x:auto}"
             "figure{margin:1.5em 0}img{max-width:100%}</style></head><body>",
             "<h1>The port and TF against the float64 truth</h1>",
             "<pre>" + html.escape("\n".join(header_lines)) + "</pre>",
             "<h2>Cases</h2>",
             "<pre>" + html.escape("\n".join([table_header, "-" * len(table_header), *rows]))
             + "</pre>"]
    for i, (caption, data) in enumerate(images):
        if i == 1:
            parts.append(f"<h2>Where they part: case {worst} "
                         f"({html.escape(results[worst].shape)}), the largest port gradient "
                         "error</h2>")
        parts.append(f"<figure><img alt='{html.escape(caption)}' "
                     f"src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    # Each image's decoded width, written into the page once loaded (a browser test
    # reads it from the rendered document).
    parts.append("<script>window.addEventListener('load', () => document.querySelectorAll("
                 "'img').forEach(i => i.setAttribute('data-width', i.naturalWidth)));"
                 "</script>")
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
