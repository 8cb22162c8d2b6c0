"""Fixtures shared by the test modules (the project's root conftest.py sets up the
session)."""
import pytest

from optional_deps import need_c_kernel


@pytest.fixture(params=["c-kernel", "tensor"])
def search(request, monkeypatch):
    """Runs a test on one search: the compiled C kernel, or the tensor search."""
    import ctc_decoder as D

    if request.param == "tensor":
        monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
        assert D._kernel() is None
    else:
        need_c_kernel()
        assert D._kernel() is not None
    return request.param
