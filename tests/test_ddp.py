"""Multi-process training: two DDP processes (gloo, CPU), each on half a batch, give
the single-process gradients on the whole batch. DDP averages gradients over ranks,
so with reduction="mean" (halves of equal size) they are equal, and with "sum" the
single-process gradient is the world size (2) times the DDP one."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.parametrize("reduction, scale", [("mean", 1.0), ("sum", 2.0)])
def test_two_process_ddp_equals_one_process(tmp_path, reduction, scale):
    out = tmp_path / "grads.pt"
    result = subprocess.run([sys.executable, str(WORKER), str(out), reduction],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    grads = torch.load(out)
    assert len(grads["ddp"]) == len(grads["single"]) == 4
    for ddp, single in zip(grads["ddp"], grads["single"], strict=True):
        torch.testing.assert_close(ddp * scale, single, atol=1e-10, rtol=1e-9)
