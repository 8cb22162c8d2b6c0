"""The comparison tolerances, stated once for every test and for the comparison.

A value passes when ``|got - want| <= atol + rtol * |want|`` elementwise (float32).
The comparison against TensorFlow (``check.py``) judges the port against the float64
truth, with the gradient bound widened by a float32 budget per frame.
"""
LOSS = dict(atol=1e-4, rtol=1e-5)
GRAD = dict(atol=1e-4, rtol=0.0)
# Float32 rounding in a T-frame log-domain recursion moves the gradient by a few
# T * u (u = 2**-24, float32's unit roundoff): at T ~ 1000 both the port and the TF
# reference measured 1.2 to 2.9 T * u from the float64 truth. The comparison widens
# GRAD by this budget per frame of the longest example.
GRAD_F32_PER_FRAME = 4 * 2.0**-24
# alpha, beta, log_seq_prob_final and log_label_prob.
LOG_PROB = dict(atol=1e-4, rtol=1e-4)
# The original's unit test checks its gradient more tightly.
UNIT_TEST_GRAD = dict(atol=1e-5, rtol=0.0)


def _as_array(x):
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    elif hasattr(x, "numpy"):  # a TensorFlow tensor
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def within(got, want, bounds, slack: float = 0.0) -> bool:
    """True when every element passes ``|got - want| <= atol + rtol * |want| + slack``."""
    import numpy as np

    got, want = _as_array(got), _as_array(want)
    limit = bounds["atol"] + bounds["rtol"] * np.abs(want) + slack
    return bool(np.all(np.abs(got - want) <= limit))


def assert_within(got, want, bounds, what="", *, finite_only=False):
    """Asserts the rule above, with numpy's report on failure. ``finite_only``
    compares only where ``want`` is finite (the original's NaN and inf are not
    targets), and then requires ``got`` to be finite there."""
    import numpy as np

    got, want = _as_array(got), _as_array(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if finite_only:
        keep = np.isfinite(want)
        got, want = got[keep], want[keep]
        assert np.isfinite(got).all(), f"{what}: not finite where the original is"
    np.testing.assert_allclose(got, want, atol=bounds["atol"], rtol=bounds["rtol"],
                               err_msg=what)
