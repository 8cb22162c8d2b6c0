"""Set-up for the whole test session, run before any test module is collected.

* Without a GPU, the Triton kernels run on CPU tensors under Triton's interpreter;
  the switch must be set before triton is imported. With a CUDA device the real
  kernels run. Under the interpreter NumPy's divide-by-zero warning is off (log 0).
* triton is loaded before TensorFlow (which the parity tests import): both bundle
  LLVM, and triton's native library crashes the process (SIGSEGV) when it is loaded
  after TensorFlow's; the other order works. torch.compile and dispatch-mode tests
  import triton through torch._dynamo.
"""
import importlib.util
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("TRITON_INTERPRET") == "1":
    # The interpreter runs the kernels in NumPy, which warns where a GPU silently
    # returns log 0 = -inf (an unreachable state, the padding rows of a program): a
    # test that asks for silence from this package would fail on NumPy's words.
    import numpy

    numpy.seterr(divide="ignore")
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401


def pytest_sessionstart(session):
    """Under CI the compiled C kernel must build: a failed build would otherwise only
    warn, and every test that does not name a backend would quietly test the
    fallback. (The pure-PyTorch run sets SEQ_LOSS_UTIL_KERNEL=0, which the loss
    honours; tests that compare backends still build and use the kernel.)"""
    if not os.environ.get("CI"):
        return
    import warnings

    import pytest

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        from _seq_loss_kernels import cpu

        if cpu.backend() is None:
            raise pytest.UsageError("CI: the compiled C kernel did not build: "
                                    + "; ".join(str(w.message) for w in seen))
