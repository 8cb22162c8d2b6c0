"""One parity check: the port and the TF reference on identical inputs, both measured
against the float64 truth.

At realistic sizes (T in the thousands) float32 rounding alone moves a CTC gradient
by about 1e-4, in TF as in the port, so a fixed bound on ``|port - TF|`` fails two
correct float32 programs. Instead both are compared with an independent float64
computation (``reference.py``, on the same float32 logits), and the port passes when

    |port - truth| <= atol + rtol * |truth|                    (loss)
    |port - truth| <= atol + GRAD_F32_PER_FRAME * T            (gradient)

elementwise, with the bounds of ``tolerances.py``. The per-frame budget was set from
the reference's own float32 error: at T ~ 1000 TF and the port both measured 1.2 to
2.9 T * u from the truth (u = 2**-24), and the budget is 4 T * u (2.4e-4 at T = 1000).
An error of 1e-3 in the gradient at T = 1000 fails (``test_compare.py`` builds one).

TF's own error is measured and reported but lends no slack: where it exceeds the
same bounds, TF is the one that is off, and the result says so, as it says where TF
raised or returned NaN or inf (the original does on empty labels, huge logits and
garbage in padded frames). TF is off on long utterances with many classes: the
original stands in ``LOG_0`` = -706.89 for log 0 in its transitions, and once the
real paths fall about 700 nats below the best state, forbidden transitions weigh as
much as they do (seen at T = 1282, C = 5000: loss off by 133, gradient by 1.0).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

import seq_loss_util as S
from parity_tests import reference, tolerances as tol


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b), initial=0.0))


@dataclasses.dataclass
class Result:
    shape: str
    tf_state: str  # "ok", "off" (TF's own error beyond the budget), "raised" or "not finite"
    why: str  # what TF raised, or ""
    loss_diff: float  # max |port - float64 truth| over the batch
    grad_diff: float
    tf_loss_diff: float  # max |TF - float64 truth|; nan when TF raised or was not finite
    tf_grad_diff: float
    tf_ms: float  # nan when the TF side raised
    torch_ms: float
    passed: bool

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def port_loss_and_grad(aug_labels, aug_len, logits, logits_len, weights, device="cpu"):
    """The port on the untrimmed inputs: loss (B,), gradient (B, T, C), milliseconds."""
    x = torch.tensor(logits, device=device, requires_grad=True)
    args = [torch.tensor(a, device=device) for a in (aug_labels, aug_len, logits_len)]
    start = time.perf_counter()
    loss = S.ctc_loss(args[0], args[1], x, args[2])
    loss.backward(torch.tensor(weights, device=device))
    if device != "cpu":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) * 1e3
    return loss.detach().cpu().numpy(), x.grad.cpu().numpy(), ms


def check_case(case, runner, device="cpu") -> Result:
    loss, grad, torch_ms = port_loss_and_grad(case.aug_labels, case.aug_len, case.logits,
                                              case.logits_len, case.weights, device)
    true_loss, true_grad = reference.ctc_batch(case.aug_labels, case.aug_len, case.logits,
                                               case.logits_len)
    true_grad = true_grad * case.weights[:, None, None]
    frames = int(np.max(case.logits_len, initial=0))
    grad_budget = tol.GRAD_F32_PER_FRAME * frames

    why, tf_ms = "", float("nan")
    tf_loss_diff = tf_grad_diff = float("nan")
    try:
        start = time.perf_counter()
        tf_loss, tf_grad = runner.loss_and_grad(case.aug_labels, case.aug_len, case.logits,
                                                case.logits_len, case.weights)
        tf_ms = (time.perf_counter() - start) * 1e3
    except Exception as e:  # the original raises on inputs it does not support
        tf_state, why = "raised", f"TF raised {type(e).__name__}"
    else:
        if np.isfinite(tf_loss).all() and np.isfinite(tf_grad).all():
            tf_loss_diff, tf_grad_diff = _max_abs(tf_loss, true_loss), _max_abs(tf_grad, true_grad)
            tf_ok = (tol.within(tf_loss, true_loss, tol.LOSS)
                     and tol.within(tf_grad, true_grad, tol.GRAD, grad_budget))
            tf_state = "ok" if tf_ok else "off"
        else:
            tf_state = "not finite"

    finite = np.isfinite(loss).all() and np.isfinite(grad).all()
    passed = bool(finite and tol.within(loss, true_loss, tol.LOSS)
                  and tol.within(grad, true_grad, tol.GRAD, grad_budget))
    return Result(case.shape, tf_state, why, _max_abs(loss, true_loss), _max_abs(grad, true_grad),
                  tf_loss_diff, tf_grad_diff, tf_ms, torch_ms, passed)
