"""A TensorFlow CTC with the original module's names, signatures and numbers.

Written in this project from the description of the original's computation
(shared/golden/ALGORITHM.md) and checked against its recorded outputs; none of the
original's code is here. It keeps the original's structure on purpose: a dense
``(B, L, L)`` transition table, ``tf.scan`` over time, renormalisation at every frame,
masking by ``multiply_no_nan``, a max (not a log-sum-exp) of the two final states,
and the gradient in ``tf.custom_gradient``. So it also keeps the original's limits:
float32 only, NaN for very large logits, errors on empty labels and on padding wider
than the longest length. It is a reference for checking, not for speed.

Shapes: ``B`` batch, ``U`` raw label length, ``L`` blank-augmented length, ``T``
frames, ``C`` classes including the blank.
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

# float32(log(1e-307)): the original's stand-in for log(0).
log_0 = float(np.float32(np.log(1e-307)))
LOG_0 = log_0


def to_blank_augmented_labels(inputs, blank_index=0, boundary_blanks=True):
    """``{"SEQ_DATA": (B, U), "SEQ_LEN": (B,)}`` to blank-interleaved labels.

    Ids ``>= blank_index`` are raised by one; the result is ``(B, 2U + 1)`` with
    boundary blanks (``(B, 2U - 1)`` without), 0 past each new length.
    """
    labels = tf.convert_to_tensor(inputs["SEQ_DATA"])
    lengths = tf.convert_to_tensor(inputs["SEQ_LEN"])
    batch, width = tf.shape(labels)[0], tf.shape(labels)[1]
    blank = tf.cast(blank_index, labels.dtype)
    shifted = tf.where(labels >= blank, labels + 1, labels)  # (B, U)
    blanks = tf.fill([batch, width], blank)
    pairs = tf.reshape(tf.stack([blanks, shifted], axis=2), [batch, 2 * width])  # b l b l ...
    if boundary_blanks:
        out = tf.concat([pairs, tf.fill([batch, 1], blank)], axis=1)  # (B, 2U + 1)
        new_len = 2 * lengths + 1
    else:
        out = pairs[:, 1:]  # (B, 2U - 1)
        new_len = tf.maximum(2 * lengths - 1, 0)
    keep = tf.sequence_mask(new_len, tf.shape(out)[1])
    out = tf.where(keep, out, tf.zeros_like(out))
    return {"SEQ_DATA": out, "SEQ_LEN": tf.cast(new_len, lengths.dtype)}


def calculate_initial_log_seq_prob(label_len):
    """Start and end vectors ``(B, L)``: 0 at state 0 / ``label_len - 1``, LOG_0 elsewhere."""
    label_len = tf.convert_to_tensor(label_len)
    width = tf.reduce_max(label_len)
    states = tf.range(width, dtype=label_len.dtype)
    start = tf.where(states == 0, 0.0, LOG_0)[tf.newaxis, :]
    start = tf.tile(start, [tf.shape(label_len)[0], 1])
    end = tf.where(states[tf.newaxis, :] == label_len[:, tf.newaxis] - 1, 0.0, LOG_0)
    return start, end


def calculate_log_label_prob(labels, softmax_output):
    """``log(softmax_output)`` ``(B, T, C)`` gathered at each label: ``(B, T, L)``."""
    return tf.gather(tf.math.log(softmax_output), labels, axis=2, batch_dims=1)


def label_trans_table(labels, labels_len):
    """``(B, L, L)`` float32: 0 for i -> i, i -> i + 1, and i -> i + 2 unless the
    labels at i and i + 2 are equal; LOG_0 elsewhere. ``L = max(labels_len)``."""
    labels = tf.convert_to_tensor(labels)
    width = tf.reduce_max(labels_len)
    labels = labels[:, :width]
    states = tf.range(width)
    step = states[tf.newaxis, :] - states[:, tf.newaxis]  # (L, L): j - i
    differs = tf.not_equal(labels[:, :-2], labels[:, 2:])  # (B, L - 2)
    skip_from = tf.pad(differs, [[0, 0], [0, 2]])[:, :width]  # (B, L): may i skip to i + 2?
    allowed = (step == 0) | (step == 1)
    allowed = allowed[tf.newaxis] | ((step == 2)[tf.newaxis] & skip_from[:, :, tf.newaxis])
    return tf.where(allowed, 0.0, LOG_0)


def calculate_alpha_beta(label_trans_table, log_label_prob, label_len, logit_len):
    """Per-frame normalised alpha and beta ``(B, T, L)`` and the final log-probability.

    See ALGORITHM.md: alpha includes frame t, beta covers frames after t and restarts
    from the end vector at padded frames; outputs of padded frames and states get
    LOG_0 added once for each; the final value is the max of the two end states at
    frame ``logit_len - 1`` plus the summed normalisers.
    """
    table = tf.convert_to_tensor(label_trans_table)
    log_p = tf.convert_to_tensor(log_label_prob)
    batch, frames, width = tf.shape(log_p)[0], tf.shape(log_p)[1], tf.shape(log_p)[2]
    start, end = calculate_initial_log_seq_prob(label_len)

    def forward(state, p_t):
        carry, total = state
        x = tf.reduce_logsumexp(carry[:, :, tf.newaxis] + table, axis=1) + p_t  # (B, L)
        norm = tf.reduce_max(x, axis=1)
        return x - norm[:, tf.newaxis], total + norm

    alpha_t, norm_t = tf.scan(forward, tf.transpose(log_p, [1, 0, 2]),
                              initializer=(start, tf.zeros([batch], log_p.dtype)))
    alpha = tf.transpose(alpha_t, [1, 0, 2])  # (B, T, L)
    norms = tf.transpose(norm_t)  # (B, T): summed normalisers up to each frame

    rows = tf.range(batch, dtype=logit_len.dtype)
    last = logit_len - 1
    end_state = tf.cast(label_len, logit_len.dtype) - 1
    final_a = tf.gather_nd(alpha, tf.stack([rows, last, end_state], axis=1))
    final_b = tf.gather_nd(alpha, tf.stack([rows, last, end_state - 1], axis=1))
    log_seq_prob_final = (tf.maximum(final_a, final_b)
                          + tf.gather_nd(norms, tf.stack([rows, last], axis=1)))

    frame_mask = tf.sequence_mask(logit_len, frames, dtype=log_p.dtype)  # (B, T)
    next_p = tf.concat([log_p[:, 1:], tf.zeros([batch, 1, width], log_p.dtype)], axis=1)

    def backward(carry, elems):
        q_t, m_t = elems
        z = carry + q_t
        y = tf.reduce_logsumexp(table + z[:, tf.newaxis, :], axis=2)
        y = y - tf.reduce_max(y, axis=1, keepdims=True)
        m_t = m_t[:, tf.newaxis]
        return tf.math.multiply_no_nan(y, m_t) + end * (1.0 - m_t)

    beta_t = tf.scan(backward, (tf.transpose(next_p, [1, 0, 2]), tf.transpose(frame_mask)),
                     initializer=end, reverse=True)
    beta = tf.transpose(beta_t, [1, 0, 2])

    state_mask = tf.sequence_mask(label_len, width, dtype=log_p.dtype)  # (B, L)
    frame_pad = (LOG_0 * (1.0 - frame_mask))[:, :, tf.newaxis]
    state_pad = (LOG_0 * (1.0 - state_mask))[:, tf.newaxis, :]
    alpha = alpha + frame_pad + state_pad
    beta = beta + frame_pad + state_pad
    return alpha, beta, log_seq_prob_final


@tf.custom_gradient
def ctc_loss(labels, labels_len, logits, logits_len):
    """Per-example loss ``(B,)`` from blank-augmented labels and logits ``(B, T, C)``.

    The loss is minus the final log-probability, 0 where ``logits_len < labels_len``;
    the gradient is ``softmax - posterior`` per class, masked the same way.
    """
    softmax = tf.nn.softmax(logits)
    table = label_trans_table(labels, labels_len)
    log_label_prob = calculate_log_label_prob(labels, softmax)
    alpha, beta, final = calculate_alpha_beta(table, log_label_prob, labels_len, logits_len)
    valid = tf.cast(logits_len >= tf.cast(labels_len, logits_len.dtype), logits.dtype)  # (B,)
    loss = -tf.math.multiply_no_nan(final, valid)

    def grad(upstream):
        log_post = alpha + beta
        log_post -= tf.reduce_logsumexp(log_post, axis=2, keepdims=True)  # (B, T, L)
        onehot = tf.one_hot(labels, tf.shape(logits)[2], dtype=logits.dtype)  # (B, L, C)
        per_class = tf.einsum("btl,blc->btc", tf.exp(log_post), onehot)
        log_class = tfp.math.log_add_exp(LOG_0, tf.math.log(per_class))  # (B, T, C)
        frame_mask = tf.sequence_mask(logits_len, tf.shape(logits)[1], dtype=logits.dtype)
        g = (softmax - tf.exp(log_class)) * valid[:, None, None] * frame_mask[:, :, None]
        return None, None, g * upstream[:, None, None], None

    return loss, grad
