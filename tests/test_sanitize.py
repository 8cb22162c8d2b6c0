"""The sanitizer job's canaries (``make sanitize``, tests/README.md): proof that the C
kernels under test were built with AddressSanitizer and UndefinedBehaviorSanitizer,
that their runtime is loaded, and that a report stops the process.

Each canary makes a call that no public function makes (the checks in front of the
kernel refuse such inputs) straight to the loaded library, in a child process, and
expects the sanitizer's report there. In a plain build the same calls go unnoticed, so
a job that lost its flags or its preload fails here, instead of passing on kernels that
nothing checked. Skipped outside that job: a plain build has nothing to report.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("SEQ_LOSS_UTIL_SANITIZE") != "1",
    reason="the sanitizer job's canaries: run by `make sanitize` (SEQ_LOSS_UTIL_SANITIZE=1)")

ROOT = Path(__file__).resolve().parents[1]
MISCONFIGURED = ("the kernel was not built or run under the sanitizers: SEQ_LOSS_UTIL_CFLAGS "
                 "needs -fsanitize=address,undefined -fno-sanitize-recover=undefined and "
                 "LD_PRELOAD the compiler's libasan.so (see `make sanitize`)")

# The loss's forward on one example whose logits_len claims a frame more than the
# logits hold. alpha has room for that frame, so the one fault is a read past the end
# of the logits: a plain build reads a few bytes of the heap and carries on.
READ_PAST_THE_END = textwrap.dedent("""
    import torch
    from _seq_loss_kernels import cpu
    assert cpu.backend() is not None, "the kernel did not build"
    frames, classes = 4, 3
    log_probs = torch.zeros(1, frames, classes)
    labels = torch.tensor([[0, 1, 0]])
    labels_len, logits_len = torch.tensor([3]), torch.tensor([frames + 1])
    alpha, finals = torch.empty(1, frames + 1, 3), torch.empty(1, 2)
    cpu._kernel_lib.ctc_forward_f32(
        log_probs.data_ptr(), frames, classes, labels.data_ptr(), 3, labels_len.data_ptr(),
        logits_len.data_ptr(), 0, 1, alpha.data_ptr(), finals.data_ptr())
    print("survived")
""")

# Example 1 of a batch whose frame count overflows int64 once multiplied by the class
# count (b * T * C, signed): undefined behaviour, with no memory touched, since the
# example has no labels and no frames. A plain build computes a wrapped pointer it
# never uses; UBSan reports it, and must then stop the process rather than go on.
SIGNED_OVERFLOW = textwrap.dedent("""
    import torch
    from _seq_loss_kernels import cpu
    assert cpu.backend() is not None, "the kernel did not build"
    frames, classes = 2**62, 4
    log_probs, labels = torch.zeros(2, 1, classes), torch.zeros(2, 0, dtype=torch.long)
    labels_len, logits_len = torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    alpha, finals = torch.empty(2, 1, 1), torch.empty(2, 2)
    cpu._kernel_lib.ctc_forward_f32(
        log_probs.data_ptr(), frames, classes, labels.data_ptr(), 0, labels_len.data_ptr(),
        logits_len.data_ptr(), 1, 2, alpha.data_ptr(), finals.data_ptr())
    print("survived")
""")


@pytest.fixture(scope="module", autouse=True)
def cached_kernel():
    # Built here first, so that each child loads it from the cache: a process that built
    # it itself runs it from a folder already deleted, where the report cannot read the
    # line numbers (it names only an offset in kernel.so).
    from _seq_loss_kernels import cpu

    assert cpu.backend() is not None, "the kernel did not build (the warning says why)"


def run_child(code):
    # The job's environment as it is (flags, preload, private cache): what it tests.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEQ_LOSS_UTIL_KERNEL": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_canary_address_sanitizer_reports_a_read_past_the_end():
    result = run_child(READ_PAST_THE_END)
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in result.stderr, (
        f"{MISCONFIGURED}; the child exited {result.returncode} with {result.stdout!r} "
        f"and {result.stderr[-3000:]}")
    assert result.returncode != 0 and "survived" not in result.stdout
    # Built with -g, through cpu.py's #line markers: the report names the line to fix.
    assert "in ctc_forward_f32" in result.stderr and "cpu.c:" in result.stderr, result.stderr


def test_canary_undefined_behaviour_stops_the_process():
    result = run_child(SIGNED_OVERFLOW)
    assert "runtime error: signed integer overflow" in result.stderr, (
        f"{MISCONFIGURED}; the child exited {result.returncode} with {result.stdout!r} "
        f"and {result.stderr[-3000:]}")
    # Reported and then carried on: a test run would print the report and still pass.
    assert result.returncode != 0 and "survived" not in result.stdout, (
        "UBSan reported but did not stop the process: -fno-sanitize-recover=undefined "
        "is missing from SEQ_LOSS_UTIL_CFLAGS")
