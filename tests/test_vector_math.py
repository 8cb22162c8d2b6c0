"""The C kernel's float32 exp and log (cpu.c's inline ones, vector code) against the
correctly rounded values (float64 libm's, rounded to float32): within 1 ulp over a
dense sweep of their whole domain, exactly 0 for exp of -inf and of everything below
float32's smallest normal result, exactly 0 for log(1)."""
import ctypes

import numpy as np
import torch

from optional_deps import need_c_kernel


def run(x):
    import seq_loss_util

    need_c_kernel()
    seq_loss_util._kernel_backend()
    from _seq_loss_kernels import cpu

    x = torch.as_tensor(x, dtype=torch.float32).contiguous()
    ex, lg = torch.empty_like(x), torch.empty_like(x)
    cpu._kernel_lib.ctc_exp_log_f32(x.data_ptr(), ctypes.c_int64(x.numel()), ex.data_ptr(),
                                    lg.data_ptr())
    return ex, lg


def ulps(a, b):
    """Distance in float32 steps between two float32 arrays of one sign."""
    ia = a.numpy().view(np.int32).astype(np.int64)
    ib = b.numpy().view(np.int32).astype(np.int64)
    return np.abs(ia - ib)


def test_exp_within_one_ulp():
    x = torch.cat([torch.linspace(-87.0, 88.0, 2_000_001), torch.linspace(-1e-3, 1e-3, 20_001),
                   -torch.logspace(-30, 1.9, 20_001)])
    got, _ = run(x)
    want = torch.exp(x.double()).float()
    assert ulps(got, want).max() <= 1


def test_exp_and_log_at_the_edges():
    """exp: 0 for -inf and below float32's smallest normal result, NaN for NaN (never an
    integer conversion of it: the sanitizer job would name that); log: -inf at 0. Other
    edges (exp above 88, log of negatives, infinities) are outside what the kernel
    passes them."""
    inf, nan = float("inf"), float("nan")
    got, _ = run(torch.tensor([-inf, -1e30, -104.0, -87.34, 0.0, nan]))
    assert got.tolist()[:5] == [0.0, 0.0, 0.0, 0.0, 1.0] and got[5].isnan()
    _, got = run(torch.tensor([0.0, 1.0]))
    assert got.tolist() == [-inf, 0.0]


def test_log_within_one_ulp():
    x = torch.cat([torch.logspace(-37.9, 38.5, 2_000_001), torch.linspace(0.5, 3.0, 200_001)])
    _, got = run(x)
    want = torch.log(x.double()).float()
    close = ulps(got, want)
    assert close.max() <= 1
    _, one = run(torch.tensor([1.0]))
    assert one.item() == 0.0
