"""One parity check: the port and the TF reference on identical inputs.

Where the TF side raises or returns NaN or inf (the original does on empty labels,
huge logits and garbage in padded frames), the port is checked against the
independent float64 computation in ``reference.py`` instead, and the result says so.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

import seq_loss_util as S
from parity_tests import reference, tolerances as tol


@dataclasses.dataclass
class Result:
    shape: str
    against: str  # "tf" or "float64"
    why: str  # why the float64 reference was used, or ""
    loss_diff: float  # max |port - reference| over the batch
    grad_diff: float
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
    why, tf_ms = "", float("nan")
    try:
        start = time.perf_counter()
        want_loss, want_grad = runner.loss_and_grad(case.aug_labels, case.aug_len, case.logits,
                                                    case.logits_len, case.weights)
        tf_ms = (time.perf_counter() - start) * 1e3
        if not (np.isfinite(want_loss).all() and np.isfinite(want_grad).all()):
            why = "TF not finite"
    except Exception as e:  # the original raises on inputs it does not support
        why = f"TF raised {type(e).__name__}"
    if why:
        want_loss, want_grad = reference.ctc_batch(case.aug_labels, case.aug_len, case.logits,
                                                   case.logits_len)
        want_grad = want_grad * case.weights[:, None, None]
    finite = np.isfinite(loss).all() and np.isfinite(grad).all()
    loss_diff = float(np.max(np.abs(loss - want_loss), initial=0.0))
    grad_diff = float(np.max(np.abs(grad - want_grad), initial=0.0))
    passed = bool(finite and tol.within(loss, want_loss, tol.LOSS)
                  and tol.within(grad, want_grad, tol.GRAD))
    return Result(case.shape, "float64" if why else "tf", why, loss_diff, grad_diff, tf_ms,
                  torch_ms, passed)
