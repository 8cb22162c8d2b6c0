"""The TF reference (the original, or this project's mirror) against the recorded data.

This is what makes the mirror a reference rather than a second guess: on every
finite recorded case it must give the original's outputs, function by function, to
the same tolerances as the port.
"""
import numpy as np
import pytest

from parity_tests import golden, tolerances as tol

pytestmark = pytest.mark.needs_tf
CASES = [c["name"] for c in golden.end_to_end_cases()]
FINITE = {c["name"]: c.get("finite", True) for c in golden.end_to_end_cases()}


@pytest.fixture(scope="module")
def tf_module():
    from tf_reference import load

    return load().module


def assert_matches(got, want, bounds, what):
    tol.assert_within(got, want, bounds, what, finite_only=True)


@pytest.mark.parametrize("name", CASES)
def test_tf_functions(tf_module, name):
    import tensorflow as tf

    case = golden.case(name)
    inputs = {"SEQ_DATA": tf.constant(case["raw_labels"]), "SEQ_LEN": tf.constant(case["raw_len"])}
    for boundary, suffix in ((True, ""), (False, "_no_boundary")):
        out = tf_module.to_blank_augmented_labels(inputs, int(case["blank_index"]), boundary)
        np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), case["aug_labels" + suffix])
        np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), case["aug_len" + suffix])
    labels, labels_len = tf.constant(case["aug_labels"]), tf.constant(case["aug_len"])
    assert_matches(tf_module.label_trans_table(labels, labels_len), case["trans_table"],
                   tol.LOG_PROB, "trans_table")
    softmax = tf.nn.softmax(tf.constant(case["logits"]))
    assert_matches(tf_module.calculate_log_label_prob(labels, softmax), case["log_label_prob"],
                   tol.LOG_PROB, "log_label_prob")
    alpha, beta, final = tf_module.calculate_alpha_beta(
        tf.constant(case["trans_table"]), tf.constant(case["log_label_prob"]), labels_len,
        tf.constant(case["logits_len"]))
    assert_matches(alpha, case["alpha"], tol.LOG_PROB, "alpha")
    assert_matches(beta, case["beta"], tol.LOG_PROB, "beta")
    assert_matches(final, case["log_seq_prob_final"], tol.LOG_PROB, "log_seq_prob_final")


@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
@pytest.mark.parametrize("name", CASES)
def test_tf_loss_and_gradient(name, weighted):
    from parity_tests.tf_side import runner

    case = golden.case(name)
    weights = case["upstream_weights"] if weighted else None
    loss, grad = runner().loss_and_grad(case["aug_labels"], case["aug_len"], case["logits"],
                                        case["logits_len"], weights)
    assert_matches(loss, case["loss"], tol.LOSS, "loss")
    assert_matches(grad, case["grad_weighted" if weighted else "grad"], tol.GRAD, "grad")


def test_tf_original_unit_tests(tf_module):
    """The original's own unit-test values for the table and for alpha and beta."""
    import tensorflow as tf

    case = golden.case("unit_test_trans_table")
    table = tf_module.label_trans_table(tf.constant(case["labels"]), tf.constant(case["len"]))
    assert_matches(table, case["table"], tol.LOG_PROB, "unit_test_trans_table")
    case = golden.case("unit_test_alpha_beta")
    alpha, beta, final = tf_module.calculate_alpha_beta(
        tf.constant(case["trans_table"]), tf.constant(case["log_label_prob"]),
        tf.constant(case["len"]), tf.constant(case["logits_len"]))
    assert_matches(alpha, case["alpha"], tol.LOG_PROB, "alpha")
    assert_matches(beta, case["beta"], tol.LOG_PROB, "beta")
    assert_matches(final, case["log_seq_prob_final"], tol.LOG_PROB, "final")
