"""The comparison command: it names the reference, prints a row per case, writes JSON,
and exits 1 when a case fails."""
import json

import pytest

from parity_tests import compare, tolerances

pytestmark = pytest.mark.needs_tf


def test_compare_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert compare.main(["--cases", "3", "--max-time", "40", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("TF reference: ")
    assert "summary: 3/3 cases pass" in text
    result = json.loads(out.read_text())
    assert result["passed"] == result["total"] == 3
    assert result["reference"]["kind"] in ("mirror", "original")


def test_compare_exits_1_on_a_failure(monkeypatch, capsys):
    monkeypatch.setitem(tolerances.LOSS, "atol", -1.0)  # nothing can pass
    assert compare.main(["--cases", "2", "--max-time", "20"]) == 1
    assert "FAIL" in capsys.readouterr().out


# A realistic size, where float32 rounding alone moves the gradient by ~1e-4.
REALISTIC = ["--cases", "1", "--batch", "4", "--max-time", "1000", "--max-label", "200",
             "--classes", "64", "--seed", "3"]


def test_realistic_size_passes(capsys):
    assert compare.main(REALISTIC) == 0, capsys.readouterr().out


def test_a_gradient_off_by_1e_3_fails(monkeypatch, capsys):
    from parity_tests import check

    honest = check.port_loss_and_grad

    def wrong(*args, **kwargs):
        loss, grad, ms = honest(*args, **kwargs)
        grad = grad.copy()
        grad[0, 0, 0] += 1e-3  # one entry of a valid frame
        return loss, grad, ms

    monkeypatch.setattr(check, "port_loss_and_grad", wrong)
    assert compare.main(REALISTIC) == 1
    row = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("0 ")]
    assert row and row[0].endswith("FAIL") and "1.00e-03" in row[0]


def test_port_runs_after_tensorflow_in_one_process():
    """The comparison's order: TensorFlow first, then the port, eagerly. The port must
    not load triton there (loaded after TensorFlow, its native library segfaults), so
    this runs in a fresh process without the test session's set-up."""
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = textwrap.dedent("""
        import sys
        import tensorflow
        import torch
        import seq_loss_util as S
        aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 2]]),
                                           "SEQ_LEN": torch.tensor([2])}, 0)
        x = torch.randn(1, 6, 4, requires_grad=True)
        S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], x, torch.tensor([6]), exact=True).sum().backward()
        S.forced_align(x, torch.tensor([[1, 2]]))
        print("triton loaded:", "triton" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "triton loaded: False" in result.stdout
