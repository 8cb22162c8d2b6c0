"""Set-up for the whole test session, run before any test module is collected.

* Without a GPU, the Triton kernels run on CPU tensors under Triton's interpreter;
  the switch must be set before triton is imported. With a CUDA device the real
  kernels run.
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
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
