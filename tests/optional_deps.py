"""Optional packages: a test that needs one skips with the reason when it is missing
or too old. Where CI runs (it installs every extra) the same gap is an error, so a
broken install step cannot hide behind a skip."""
from __future__ import annotations

import importlib.metadata
import os

import pytest


def missing(requirements: dict, extra: str) -> str | None:
    """Why ``requirements`` ({distribution: minimum version}) are not met, or None."""
    from packaging.version import Version

    for dist, minimum in requirements.items():
        try:
            found = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return f"{dist} is not installed (pip install '.[{extra}]')"
        if Version(found) < Version(minimum):
            return f"{dist} {found} is older than {minimum} (pip install -U '.[{extra}]')"
    return None


def require(requirements: dict, extra: str) -> None:
    """Skips the calling test module unless ``requirements`` are met; fails under CI."""
    reason = missing(requirements, extra)
    if reason is None:
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"CI installs the '{extra}' extra, yet {reason}")
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str, extra: str):
    """The module ``name``; where it cannot be imported, a skip (a failure under CI)
    naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        unavailable(f"{name} cannot be imported ({e}): pip install '.[{extra}]'")


# What the Hugging Face tests need: the same floors as the 'hf' extra.
HF = {"transformers": "4.46", "accelerate": "1.1", "jiwer": "3.0"}


# ---------------------------------------------------------------------------------------
# The accelerated backends. Switched off on purpose (the suite's pure-PyTorch run sets
# SEQ_LOSS_UTIL_KERNEL=0) is a skip; missing by accident is a skip on a user's machine
# and a failure in CI, which has a C compiler and installs triton.

def unavailable(reason: str) -> None:
    """Skips with ``reason``; under CI, which should have everything, fails instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI should have it, yet {reason}", pytrace=False)
    pytest.skip(reason)


def need_c_kernel() -> None:
    """Skips (fails under CI) unless the compiled C kernel runs here."""
    import seq_loss_util as S

    if os.environ.get("SEQ_LOSS_UTIL_KERNEL") == "0":
        pytest.skip("the compiled kernel is switched off (SEQ_LOSS_UTIL_KERNEL=0)")
    if S._kernel_backend() is None:
        unavailable("the compiled kernel is unavailable (no C compiler, or its build failed: "
                     "the warning says why)")


def both_searches(monkeypatch, run):
    """``(run() with the C kernel's search, run() with the tensor search)``: ctc_decoder
    reads SEQ_LOSS_UTIL_KERNEL at each call. Skips (fails under CI) without the kernel."""
    import ctc_decoder as D

    need_c_kernel()
    assert D._kernel() is not None
    compiled = run()
    with monkeypatch.context() as patch:
        patch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
        assert D._kernel() is None
        tensors = run()
    return compiled, tensors


def triton_module_marks(device: str, *warnings: str) -> list:
    """``pytestmark`` for a module of Triton kernel tests: skipped on CPU unless the
    interpreter is on, and the NumPy warnings the interpreter raises on purpose (log 0,
    inf - inf) ignored, plus ``warnings`` (filterwarnings specs)."""
    return [
        pytest.mark.skipif(device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
                           reason="no GPU, and TRITON_INTERPRET=1 was not set before triton "
                                  "loaded"),
        pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning"),
        pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
        *[pytest.mark.filterwarnings(spec) for spec in warnings],
    ]


def need_triton() -> None:
    """Skips (fails under CI) unless the Triton kernels run here: on a GPU, or on CPU
    tensors under the interpreter, which the root conftest switches on without a GPU."""
    import importlib.util

    import torch

    if importlib.util.find_spec("triton") is None:
        unavailable("triton is not installed (pip install '.[test]')")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        unavailable("no GPU, and TRITON_INTERPRET=1 was not set before triton loaded")


BACKENDS = ("c-kernel", "pytorch", "triton")


def use_backend(monkeypatch, name: str, device: str = "cpu") -> None:
    """Routes seq_loss_util's calls on ``device`` to backend ``name`` for the rest of
    the test (``monkeypatch`` undoes it), skipping as above where it cannot run."""
    import seq_loss_util as S

    if name == "c-kernel":
        monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "1")
        need_c_kernel()
    elif name == "triton":
        need_triton()
    monkeypatch.setenv("SEQ_LOSS_UTIL_BACKEND", name)
    assert S.backend(device) == name


def searches_agree(decoder, logits, lengths) -> list:
    """Runs ``decoder``'s search on the C kernel and as tensor operations (directly,
    on the CPU) and asserts the same hypotheses, token times and scores (rtol 1e-5).
    Returns the C kernel's raw hypotheses per example."""
    import numpy as np
    import torch

    import ctc_decoder as D

    need_c_kernel()
    words = decoder._words_on(torch.device("cpu"))
    args = (D._log_probs(logits, lengths), lengths, decoder.blank, decoder.beam_size,
            decoder.nbest, words, decoder.token_min_logp, decoder.beam_threshold)
    compiled, tensors = D._search(*args), D._search_tensors(*args)
    assert [[h[:2] for h in hyps] for hyps in compiled] == [[h[:2] for h in hyps]
                                                           for hyps in tensors]
    for got, want in zip(compiled, tensors, strict=True):
        np.testing.assert_allclose([h[2:7] for h in got], [h[2:7] for h in want], rtol=1e-5,
                                   atol=1e-4)
        assert [h[7] for h in got] == [h[7] for h in want]  # other scorers' totals: none
    return compiled
