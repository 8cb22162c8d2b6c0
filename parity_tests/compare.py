"""Side-by-side comparison of the PyTorch port and the TensorFlow reference.

    python -m parity_tests.compare [--cases 12] [--batch 4] [--max-time 120]
        [--max-label 30] [--classes 32] [--seed 0] [--device cpu] [--json FILE]
        [--report DIR]

Draws random batches (repeated labels, any blank, padded frames holding NaN / inf /
huge values, lengths shorter than the padded axes) and runs the port and the TF
reference on identical inputs. Both are measured against an independent float64
computation on the same float32 logits: each row shows the largest loss and gradient
(for a non-uniform incoming gradient) errors of each, both times, and pass or fail
for the port (the rule is in ``check.py``). The TF column says whether TF itself was
within the same bounds (ok), outside them (off), raised, or returned NaN or inf (as
the original does on empty labels or huge values). Exits 1 when any case fails.
``--report DIR`` also writes ``DIR/index.html``: the table, a chart of the errors, and
for the worst case each side's gradient error and alpha and beta as heatmaps
(``parity_tests/report.py``; needs matplotlib, the 'plot' extra).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from parity_tests import tolerances as tol
from parity_tests.cases import random_case
from parity_tests.check import check_case
from parity_tests.tf_side import tensorflow_available


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m parity_tests.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=12, help="number of random batches (12)")
    p.add_argument("--batch", type=int, default=4, help="examples per batch (4)")
    p.add_argument("--max-time", type=int, default=120, help="longest logits_len (120)")
    p.add_argument("--max-label", type=int, default=30, help="longest raw label (30)")
    p.add_argument("--classes", type=int, default=32, help="C, blank included (32)")
    p.add_argument("--blank", type=int, default=None, help="blank index (random per case)")
    p.add_argument("--scale", type=float, default=3.0, help="logit standard deviation (3.0)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--device", default="cpu", help="device for the port: cpu or cuda (cpu)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--report", metavar="DIR", help="also write DIR/index.html, with pictures")
    args = p.parse_args(argv)
    for name in ("cases", "batch", "max_time", "classes"):
        if getattr(args, name) < (2 if name == "classes" else 1):
            p.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if args.max_label < 0:
        p.error("--max-label must be >= 0")
    if args.blank is not None and not 0 <= args.blank < args.classes:
        p.error(f"--blank must be in [0, {args.classes - 1}]")
    return args


def _num(x: float) -> str:
    return f"{'-':>10}" if np.isnan(x) else f"{x:>10.2e}"


def progress(done: int, total: int) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * done / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\r" + " " * (width + 20) + "\r")
    sys.stderr.flush()


def main(argv=None) -> int:
    args = parse_args(argv)
    if not tensorflow_available():
        print("TensorFlow is not installed: pip install -e '.[tf]' (make compare does this)",
              file=sys.stderr)
        return 2
    import tensorflow as tf
    import torch

    from parity_tests.tf_side import runner

    tf_runner = runner()
    if args.report:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--report needs matplotlib: pip install -e '.[plot]'", file=sys.stderr)
            return 2
    header_lines = [
        tf_runner.reference.describe(),
        f"torch {torch.__version__} ({args.device}, {torch.get_num_threads()} threads), "
        f"TensorFlow {tf.__version__} (cpu)",
        f"port vs float64 truth: loss {tol.LOSS['atol']:g} abs + {tol.LOSS['rtol']:g} rel; "
        f"gradient {tol.GRAD['atol']:g} abs + {tol.GRAD_F32_PER_FRAME:.3g} per frame "
        "(float32 rounding)",
        "errors are max |x - float64 truth| over the batch; TF: whether TF meets the "
        "same bounds"]
    print("\n".join(header_lines))
    header = (f"{'case':>4}  {'shape':<24} {'TF':<10} {'port loss':>10} {'TF loss':>10} "
              f"{'port grad':>10} {'TF grad':>10} {'TF ms':>8} {'torch ms':>8}  result")
    print(header)
    print("-" * len(header))

    rng = np.random.default_rng(args.seed)
    results, cases, rows = [], [], []
    progress(0, args.cases)
    for i in range(args.cases):
        case = random_case(rng, batch=args.batch, max_time=args.max_time,
                           max_label=args.max_label, classes=args.classes, blank=args.blank,
                           scale=args.scale, pad_labels=int(rng.integers(0, 3)),
                           pad_time=int(rng.integers(0, 4)))
        r = check_case(case, tf_runner, args.device)
        results.append(r)
        cases.append(case)
        tf_ms = "raised" if np.isnan(r.tf_ms) else f"{r.tf_ms:8.1f}"
        rows.append(f"{i:>4}  {r.shape:<24} {r.tf_state:<10} {r.loss_diff:>10.2e} "
                    f"{_num(r.tf_loss_diff)} {r.grad_diff:>10.2e} {_num(r.tf_grad_diff)} "
                    f"{tf_ms:>8} {r.torch_ms:>8.1f}  {'pass' if r.passed else 'FAIL'}")
        print(rows[-1], flush=True)
        progress(i + 1, args.cases)

    passed = sum(r.passed for r in results)
    states = {state: sum(r.tf_state == state for r in results)
              for state in ("ok", "off", "raised", "not finite")}
    raised = sorted({r.why for r in results if r.why})
    if raised:
        print(f"TF: {'; '.join(raised)}")
    kind = tf_runner.reference.kind
    summary = (f"summary: {passed}/{len(results)} cases pass against the float64 truth; "
               f"port's max error: loss {max(r.loss_diff for r in results):.2e}, "
               f"gradient {max(r.grad_diff for r in results):.2e}; the TF {kind}: "
               + ", ".join(f"{n} {state}" for state, n in states.items() if n))
    print(summary)
    if args.report:
        from parity_tests import report

        page = report.write(args.report, header_lines, header, rows + ["", summary], results,
                            cases, tf_runner)
        print(f"report: {page}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"reference": {"kind": kind, "path": str(tf_runner.reference.path)},
                       "torch": torch.__version__, "tensorflow": tf.__version__,
                       "device": args.device, "args": vars(args),
                       "tolerances": {"loss": tol.LOSS, "grad": tol.GRAD,
                                          "grad_f32_per_frame": tol.GRAD_F32_PER_FRAME},
                       "passed": passed, "total": len(results),
                       "cases": [r.as_dict() for r in results]}, f, indent=2)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
