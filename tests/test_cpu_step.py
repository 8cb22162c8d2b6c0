"""A CtcLossModule training step on CPU with the C kernel: the label preparation and
checks, the log-softmax and bad-frame scan, the loss and the gradient's scale are the
kernel's calls, so the step dispatches a handful of ATen ops around them (it was 86),
and the fused path gives the general path's loss and gradient. For small float32
batches ctc_loss's whole forward is one C call and its backward another."""
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
    # The verdict's zero fill and its one read, the mean reduction, autograd's seed and
    # the mean's backward (the log-softmax is the kernel's at this size, torch's above
    # 65536 values).
    assert count.ops == ["zeros", "_local_scalar_dense", "div", "mean", "ones_like", "div",
                         "div"], count.ops


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


# ---------------------------------------------------------------- ctc_loss's checks in C
def augmented(seed=0, batch_size=5, classes=7):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(1, classes, (batch_size, 6), generator=g)
    raw[:, 2] = raw[:, 1]  # an adjacent repeat in every example
    raw_len = torch.tensor([6, 3, 0, 6, 5][:batch_size])
    aug = S.to_blank_augmented_labels({"SEQ_DATA": raw - 1, "SEQ_LEN": raw_len}, 0)
    logits = torch.randn(batch_size, 20, classes, generator=g)
    return aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.full((batch_size,), 20)


def c_verdict(labels, labels_len, logits, logits_len):
    from _seq_loss_kernels import cpu

    return cpu.KernelBackend.check_augmented(labels, labels_len, logits, logits_len)


def test_ctc_loss_checks_are_one_kernel_call_on_valid_input():
    need_c_kernel()
    from _seq_loss_kernels import verdict as V

    labels, labels_len, logits, logits_len = augmented()
    assert c_verdict(labels, labels_len, logits, logits_len) == V.NOT_PROBABILITIES
    # T_b = 6 < U + repeats = 7 for the first example: infeasible, as the ATen check says.
    logits_len[0] = 6
    assert c_verdict(labels, labels_len, logits, logits_len) == \
        V.NOT_PROBABILITIES | V.INFEASIBLE
    logits_len[0] = 7
    assert c_verdict(labels, labels_len, logits, logits_len) == V.NOT_PROBABILITIES
    # Softmax outputs in every first frame: no negative score.
    assert c_verdict(labels, labels_len, logits.softmax(-1), logits_len) == 0
    # Strided labels and int32 lengths read the same.
    wide = torch.zeros(labels.shape[0], 2 * labels.shape[1], dtype=torch.long)
    wide[:, ::2] = labels
    assert c_verdict(wide[:, ::2], labels_len.int(), logits, logits_len.int()) == \
        V.NOT_PROBABILITIES


@pytest.mark.parametrize("fault", ["even", "long_labels", "negative_frames", "long_frames",
                                   "bad_id", "blank_at_odd", "label_at_even"])
def test_each_fault_sets_its_bit_and_gets_the_general_message(monkeypatch, fault):
    need_c_kernel()
    from _seq_loss_kernels import verdict as V

    labels, labels_len, logits, logits_len = augmented()
    bit = {"even": V.EVEN_LENGTH, "long_labels": V.LABELS_LEN,
           "negative_frames": V.LOGITS_LEN, "long_frames": V.LOGITS_LEN,
           "bad_id": V.BAD_ID, "blank_at_odd": V.NOT_AUGMENTED,
           "label_at_even": V.NOT_AUGMENTED}[fault]
    if fault == "even":
        labels_len[1] = 6
    elif fault == "long_labels":
        labels_len[3] = labels.shape[1] + 2
    elif fault == "negative_frames":
        logits_len[2] = -1
    elif fault == "long_frames":
        logits_len[2] = 21
    elif fault == "bad_id":
        labels[3, 5] = 7
    elif fault == "blank_at_odd":
        labels[4, 3] = 0
    else:
        labels[0, 4] = 2
    assert c_verdict(labels, labels_len, logits, logits_len) & bit
    with pytest.raises(ValueError) as fused:
        S.ctc_loss(labels, labels_len, logits, logits_len)
    monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", "0")
    with pytest.raises(ValueError) as general:
        S.ctc_loss(labels, labels_len, logits, logits_len)
    assert str(fused.value) == str(general.value)


def test_ctc_loss_function_step_is_few_aten_ops(monkeypatch):
    need_c_kernel()
    monkeypatch.setenv("SEQ_LOSS_UTIL_BACKEND", "c-kernel")
    labels, labels_len, logits, logits_len = augmented()
    logits.requires_grad_(True)
    S.ctc_loss(labels, labels_len, logits, logits_len, exact=True).sum().backward()
    count = Count()
    with count:
        S.ctc_loss(labels, labels_len, logits, logits_len, exact=True).sum().backward()
    # The sum, autograd's seed and the gradient's accumulation into .grad: the checks
    # were some 20 ATen ops (comparisons, reductions, a stack and its read).
    assert count.ops == ["sum", "ones_like", "add_"], count.ops


@pytest.mark.parametrize("classes", [37, 31, 10, 1])
def test_the_kernels_log_softmax_equals_torchs_with_its_nans(classes):
    # 37: a vector of classes and a remainder, a row at a time; 31, 10 and 1: rows of
    # few classes, 16 rows at a time, and 120 rows leave a block of 8.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 40, classes, generator=g) * 8
    last = classes - 1
    logits[0, 5, min(2, last)] = float("nan")
    logits[1, 6, 0] = float("inf")
    logits[2, 7] = float("-inf")  # a frame where every class is impossible
    logits[2, 8, :30] = float("-inf")  # (every class, where there are no more than 30)
    logits[1, 39, min(1, last)] = float("nan")  # past example 1's frames: not bad
    frames = torch.tensor([40, 30, 40])
    log_probs, bad = cpu.backend().log_softmax(logits, frames)
    want = torch.log_softmax(logits, dim=2)
    torch.testing.assert_close(log_probs, want, rtol=2e-6, atol=2e-6, equal_nan=True)
    assert torch.equal(log_probs.isnan(), want.isnan())
    expected = torch.zeros(3, 40, dtype=torch.bool)
    expected[0, 5] = expected[1, 6] = expected[2, 7] = True
    expected[2, 8] = classes <= 30
    assert torch.equal(bad, expected)


# ------------------------------------- ctc_loss's forward and backward in one C call each
def loss_and_grad(labels, labels_len, logits, logits_len, **options):
    x = logits.detach().requires_grad_(True)
    loss = S.ctc_loss(labels, labels_len, x, logits_len, **options)
    loss.sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("options", [{}, {"exact": True}, {"exact": True, "zero_infinity": True}])
def test_the_one_call_path_equals_the_general_c_path_bit_for_bit(monkeypatch, options):
    need_c_kernel()
    import warnings

    from _seq_loss_kernels import cpu

    labels, labels_len, logits, logits_len = augmented(seed=4)
    logits_len[1] = 13  # frames past it hold anything
    logits[1, 13:] = float("nan")
    logits[3, 9, 2] = float("nan")  # a poisoned example: NaN loss and gradient
    logits_len[4] = 4  # infeasible: inf, 0, or masked by the original's rule
    calls = []
    one_call = cpu.KernelBackend.loss_forward

    def spy(*args, **kwargs):
        calls.append(1)
        return one_call(*args, **kwargs)

    monkeypatch.setattr(cpu.KernelBackend, "loss_forward", staticmethod(spy))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the infeasible example's warning: not the subject
        got = loss_and_grad(labels, labels_len, logits, logits_len, **options)
        assert calls, "the one-call path did not run"
        monkeypatch.setattr(cpu.KernelBackend, "loss_forward", staticmethod(lambda *a, **k: None))
        monkeypatch.setattr(cpu.KernelBackend, "loss_backward",
                            staticmethod(lambda *a, **k: None))
        want = loss_and_grad(labels, labels_len, logits, logits_len, **options)
    assert got[0].isnan()[3] and got[1][3, :20].isnan().all()
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.isnan(), b.isnan())
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))  # bit for bit


def test_the_one_call_path_leaves_other_inputs_to_the_general_path(monkeypatch):
    need_c_kernel()
    from _seq_loss_kernels import cpu

    labels, labels_len, logits, logits_len = augmented()
    calls = []
    monkeypatch.setattr(cpu, "_kernel_lib", _Recording(cpu._kernel_lib, calls))
    wide = torch.zeros(labels.shape[0], 2 * labels.shape[1], dtype=torch.long)
    wide[:, ::2] = labels
    for args in [(labels, labels_len.int(), logits, logits_len),  # int32 lengths
                 (labels, labels_len, logits.double(), logits_len),
                 (wide[:, ::2], labels_len, logits, logits_len),  # strided labels
                 (labels, labels_len, logits.repeat(1, 1, 600), logits_len)]:  # 84000 values
        S.ctc_loss(*args)
    assert "ctc_loss_forward_f32" not in calls
    S.ctc_loss(labels, labels_len, logits, logits_len)
    assert "ctc_loss_forward_f32" in calls


class _Recording:
    """The kernel library, recording which entry points are called (all still run)."""

    def __init__(self, lib, calls, fail=()):
        self.lib, self.calls, self.fail = lib, calls, fail

    def __getattr__(self, name):
        self.calls.append(name)
        if name in self.fail:
            return lambda *args: -1  # what the kernel returns where malloc failed
        return getattr(self.lib, name)


@pytest.mark.parametrize("entry", ["ctc_loss_forward_f32", "ctc_loss_backward_f32"])
def test_an_allocation_failure_in_the_one_call_path_is_a_memory_error(monkeypatch, entry):
    need_c_kernel()
    from _seq_loss_kernels import cpu

    labels, labels_len, logits, logits_len = augmented()
    monkeypatch.setattr(cpu, "_kernel_lib", _Recording(cpu._kernel_lib, [], fail=(entry,)))
    x = logits.requires_grad_(True)
    with pytest.raises(MemoryError, match="could not allocate"):
        S.ctc_loss(labels, labels_len, x, logits_len).sum().backward()


def test_the_c_gradient_takes_any_labels_not_only_blank_at_every_even_state():
    # The kernel sums the blank's posterior once a frame where every even state holds the
    # blank (augmented labels); other labels (a direct backend call) take the scatter by
    # state, and both give the PyTorch backend's gradient.
    need_c_kernel()
    from _seq_loss_kernels import cpu

    g = torch.Generator().manual_seed(5)
    log_probs = torch.randn(3, 30, 6, generator=g).log_softmax(-1)
    labels = torch.tensor([[0, 1, 0, 2, 0, 3, 0], [0, 2, 0, 2, 0, 0, 0], [1, 2, 3, 2, 4, 5, 1]])
    labels_len = torch.tensor([7, 5, 7])
    frames = torch.tensor([30, 25, 30])
    (alpha,), _, _ = S._TorchBackend.forward(log_probs, labels, labels_len, frames)
    want = S._TorchBackend.backward((alpha,), log_probs, labels, labels_len, frames,
                                    torch.ones(3))
    got = cpu.KernelBackend.backward((alpha,), log_probs, labels, labels_len, frames,
                                     torch.ones(3), torch.ones(3, dtype=torch.bool),
                                     torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
