"""Runs the TF reference (the original or the mirror) on NumPy inputs.

The original assumes that the time axis is exactly ``max(logits_len)`` wide and the
label axis exactly ``max(labels_len)``; it raises otherwise. The port promises the
results of trimmed inputs, so the TF side is given the trimmed inputs and its
gradient is padded back with zeros.
"""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def quiet_native_stderr():
    """TF's C++ start-up logs to fd 2 before any log setting applies; hide just that."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflow_available() -> bool:
    try:
        with quiet_native_stderr():
            import tensorflow  # noqa: F401
            import tensorflow_probability  # noqa: F401
    except ImportError:
        return False
    return True


class TfRunner:
    """``loss_and_grad(aug_labels, aug_len, logits, logits_len, weights)`` -> NumPy."""

    def __init__(self, reference):
        tensorflow_available()  # imports TF quietly
        import tensorflow as tf

        self.reference = reference
        module = reference.module

        @tf.function(reduce_retracing=True)
        def run(labels, labels_len, logits, logits_len, weights):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                loss = module.ctc_loss(labels, labels_len, logits, logits_len)
            return loss, tape.gradient(loss, logits, output_gradients=weights)

        self._tf = tf
        self._run = run
        with quiet_native_stderr():  # device discovery logs on the first op, not on import
            self.loss_and_grad(np.array([[0, 1, 0]]), np.array([3]),
                               np.zeros((1, 3, 2), np.float32), np.array([3]))

    def loss_and_grad(self, aug_labels, aug_len, logits, logits_len, weights=None):
        tf = self._tf
        frames, width = int(np.max(logits_len)), int(np.max(aug_len))
        weights = np.ones(len(aug_len), np.float32) if weights is None else weights
        loss, grad = self._run(tf.constant(aug_labels[:, :width], tf.int32),
                               tf.constant(aug_len, tf.int32),
                               tf.constant(logits[:, :frames], tf.float32),
                               tf.constant(logits_len, tf.int32),
                               tf.constant(weights, tf.float32))
        full = np.zeros(logits.shape, np.float32)
        full[:, :frames] = grad.numpy()
        return loss.numpy(), full


_runner = None


def runner():
    """The runner for the reference ``tf_reference.load()`` picks, built once."""
    global _runner
    if _runner is None:
        from tf_reference import load

        _runner = TfRunner(load())
    return _runner
