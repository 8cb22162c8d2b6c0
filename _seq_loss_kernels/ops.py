"""seq_loss_util's loss and alignment as ``torch.library`` operators.

Three opaque operators, so that ``torch.compile`` traces around them instead of into
ctypes calls, Triton launches and host reads:

* ``seq_loss_util::ctc_loss(labels, labels_len, logits, logits_len, exact,
  zero_infinity, keep_beta) -> (loss, log_probs, state, counted, poisoned)``, with autograd
  registered: its backward calls
* ``seq_loss_util::ctc_loss_backward(grad_loss, labels, labels_len, logits_len,
  log_probs, alpha, counted, poisoned) -> grad`` (B, T, C);
* ``seq_loss_util::ctc_viterbi(log_probs, labels, labels_len, logits_len) ->
  (path, score)``.

Each has a fake implementation that gives the output shapes from the input shapes
alone (the computation runs on the padded axes). The real implementations run
seq_loss_util's own functions (passed to :func:`register`, so this package never
imports the module), which pick the backend per device: the C kernel or
the PyTorch loop on CPU, Triton on CUDA. Every operator checks its inputs (ids,
lengths, shapes, dtypes) before a backend reads memory through them, with
``ctc_loss``'s messages, so neither a compiled graph nor a direct call reaches a kernel
unchecked; the loss operator also keeps the warnings. Needs ``torch.library.custom_op``
(torch 2.4 and later); ``AVAILABLE`` says whether the operators exist.
"""
from __future__ import annotations

import types

import torch
from torch import Tensor

AVAILABLE = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake")
_registered = None


def register(*, loss_forward, loss_backward, viterbi, second_order_gradient, compute_dtype,
             state_shape):
    """Registers the three operators over seq_loss_util's functions, passed in (this
    package never imports the module: no import circle), and returns them as a
    namespace with ``ctc_loss``, ``ctc_loss_backward`` and ``ctc_viterbi``; None when
    torch is older than 2.4. An operator name can be registered once per process, so
    a second call returns the first call's operators."""
    global _registered
    if not AVAILABLE:
        return None
    if _registered is not None:
        return _registered

    @torch.library.custom_op("seq_loss_util::ctc_loss", mutates_args=())
    def ctc_loss(labels: Tensor, labels_len: Tensor, logits: Tensor, logits_len: Tensor,
                 exact: bool, zero_infinity: bool, keep_beta: bool = False
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return loss_forward(labels, labels_len, logits, logits_len, exact, zero_infinity,
                            keep_beta)

    @ctc_loss.register_fake
    def _(labels, labels_len, logits, logits_len, exact, zero_infinity, keep_beta=False):
        batch, frames, classes = logits.shape
        compute = compute_dtype(logits.dtype)
        return (logits.new_empty(batch, dtype=compute),
                logits.new_empty(batch, frames, classes, dtype=compute),
                logits.new_empty(state_shape(logits, labels, keep_beta), dtype=compute),
                logits.new_empty(batch, dtype=torch.bool),
                logits.new_empty(batch, dtype=torch.bool))

    @torch.library.custom_op("seq_loss_util::ctc_loss_backward", mutates_args=())
    def ctc_loss_backward(grad_loss: Tensor, labels: Tensor, labels_len: Tensor,
                          logits_len: Tensor, log_probs: Tensor, alpha: Tensor, counted: Tensor,
                          poisoned: Tensor) -> Tensor:
        return loss_backward(grad_loss, labels, labels_len, logits_len, log_probs, alpha,
                             counted, poisoned)

    @ctc_loss_backward.register_fake
    def _(grad_loss, labels, labels_len, logits_len, log_probs, alpha, counted, poisoned):
        return torch.empty_like(log_probs)

    def _setup_context(ctx, inputs, output):
        labels, labels_len, logits, logits_len, exact, *_ = inputs
        _, log_probs, alpha, counted, poisoned = output
        ctx.exact = exact
        ctx.save_for_backward(logits, labels, labels_len, logits_len, log_probs, alpha,
                              counted, poisoned)
        ctx.mark_non_differentiable(log_probs, alpha, counted, poisoned)

    def _backward(ctx, grad_loss, *unused):
        logits, labels, labels_len, logits_len, log_probs, alpha, counted, poisoned = \
            ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: see seq_loss_util
            grad = second_order_gradient(grad_loss, logits, labels, labels_len, logits_len,
                                         counted, poisoned, ctx.exact)
        else:
            grad = ctc_loss_backward(grad_loss, labels, labels_len, logits_len, log_probs,
                                     alpha, counted, poisoned)
        return None, None, grad.to(logits.dtype), None, None, None, None

    ctc_loss.register_autograd(_backward, setup_context=_setup_context)

    @torch.library.custom_op("seq_loss_util::ctc_viterbi", mutates_args=())
    def ctc_viterbi(log_probs: Tensor, labels: Tensor, labels_len: Tensor,
                    logits_len: Tensor) -> tuple[Tensor, Tensor]:
        path, score = viterbi(log_probs, labels, labels_len, logits_len)
        return path, score

    @ctc_viterbi.register_fake
    def _(log_probs, labels, labels_len, logits_len):
        batch, frames, _ = log_probs.shape
        return (log_probs.new_empty(batch, frames, dtype=torch.long),
                log_probs.new_empty(batch))

    _registered = types.SimpleNamespace(ctc_loss=ctc_loss, ctc_loss_backward=ctc_loss_backward,
                                        ctc_viterbi=ctc_viterbi)
    return _registered
