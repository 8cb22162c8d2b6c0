"""A CtcLossModule training step on CPU with the C kernel: the label preparation and
checks, the bad-frame scan, the loss and the gradient's scale are the kernel's calls
(the log-softmax is torch's), so the step dispatches a handful of ATen ops around them
(it was 86), and the fused path gives the general path's loss and gradient."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import seq_loss_util as S
from optional_deps import need_c_kernel

# Ops that compute nothing: views, metadata, allocation without a fill.
FREE = {"view", "_unsafe_view", "expand", "t", "transpose", "permute", "select", "slice",
        "unsqueeze", "squeeze", "detach", "alias", "as_strided", "empty", "empty_like",
        "new_empty", "empty_strided", "lift_fresh", "unbind", "split", "narrow",
        "_reshape_alias", "reshape"}


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in FREE:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def batch(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 50, 12, generator=g, dtype=dtype, requires_grad=True)
    labels = torch.randint(1, 12, (4, 6), generator=g)
    labels[1, 3:] = -100  # Hugging Face's padding
    frames = torch.tensor([50, 43, 50, 49])
    return logits, labels, frames


def test_a_training_step_is_a_handful_of_aten_ops(monkeypatch):
    need_c_kernel()
    monkeypatch.setenv("SEQ_LOSS_UTIL_BACKEND", "c-kernel")
    logits, labels, frames = batch()
    module = S.CtcLossModule()
    module(logits, labels, frames).backward()  # first use: the kernel's build, not per step
    logits.grad = None
    count = Count()
    with count:
        module(logits, labels, frames).backward()
    assert len(count.ops) <= 15, count.ops
    # The verdict's zero fill and its one read, torch's log-softmax, the mean reduction,
    # autograd's seed and the mean's backward.
    assert count.ops == ["zeros", "_local_scalar_dense", "_log_softmax", "div", "mean",
                         "ones_like", "div", "div"], count.ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("exact", [False, True])
def test_the_fused_step_equals_the_general_path(monkeypatch, dtype, exact):
    """Loss and gradient through the C kernel's glue and through the PyTorch backend's
    ATen ops, including a padded example and one with a NaN logit (poisoned: NaN loss,
    NaN gradient on its frames, the others untouched)."""
    need_c_kernel()
    results = []
    for backend in ("c-kernel", "pytorch"):
        monkeypatch.setenv("SEQ_LOSS_UTIL_BACKEND", backend)
        logits, labels, frames = batch(dtype)
        with torch.no_grad():
            logits[2, 7, 3] = float("nan")
            logits[1, 45, 0] = float("nan")  # past example 1's 43 frames: ignored
        loss = S.CtcLossModule(exact=exact, reduction="none")(logits, labels, frames)
        loss.sum().backward()
        results.append((loss.detach(), logits.grad))
    (loss, grad), (want_loss, want_grad) = results
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loss, want_loss, equal_nan=True, **tol)
    torch.testing.assert_close(grad, want_grad, equal_nan=True, **tol)
    assert loss[2].isnan() and not loss[[0, 1, 3]].isnan().any()


@pytest.mark.parametrize("fault", ["gap", "blank", "long_labels_len", "long_logits_len"])
def test_faults_get_the_general_paths_message(monkeypatch, fault):
    """Each check of the fused step's verdict, faulted: the C kernel's step raises what
    the general path (the PyTorch backend) raises, word for word."""
    need_c_kernel()
    messages = []
    for backend in ("c-kernel", "pytorch"):
        monkeypatch.setenv("SEQ_LOSS_UTIL_BACKEND", backend)
        logits, labels, frames = batch()
        labels_len = None
        if fault == "gap":
            labels[0, 2] = -100  # padding before a label id
        elif fault == "blank":
            labels[3, 1] = 0
        elif fault == "long_labels_len":
            labels_len = torch.tensor([6, 3, 7, 6])
        else:
            frames = torch.tensor([50, 43, 51, 49])
        with pytest.raises(ValueError) as raised:
            S.CtcLossModule()(logits, labels, frames, labels_len)
        messages.append(str(raised.value))
    assert messages[0] == messages[1], messages
