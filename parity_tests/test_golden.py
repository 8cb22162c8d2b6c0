"""The port against the recorded outputs of the TensorFlow original, case by case.

Every end-to-end case (46) is checked function by function: augmentation with and
without boundary blanks, the transition table, log label probabilities, alpha, beta
and the final log-probability, the loss, and the gradient for a unit and a weighted
incoming gradient. Where the original produced NaN or inf, only its finite entries
are compared, and the port must be finite everywhere.
"""
import numpy as np
import pytest
import torch

import seq_loss_util as S
from parity_tests import golden, tolerances as tol

CASES = [c["name"] for c in golden.end_to_end_cases()]
FINITE = {c["name"]: c.get("finite", True) for c in golden.end_to_end_cases()}


def assert_matches(got, want, bounds, what):
    """The port must be finite everywhere, and match wherever the original is finite."""
    assert torch.isfinite(got).all(), f"{what}: the port is not finite"
    tol.assert_within(got, want, bounds, what, finite_only=True)


def test_every_case_is_checked():
    assert len(CASES) == 46


@pytest.mark.parametrize("name", CASES)
def test_augmentation(name):
    case = golden.case(name)
    inputs = {"SEQ_DATA": torch.tensor(case["raw_labels"]), "SEQ_LEN": torch.tensor(case["raw_len"])}
    blank = int(case["blank_index"])
    for boundary, suffix in ((True, ""), (False, "_no_boundary")):
        out = S.to_blank_augmented_labels(inputs, blank, boundary)
        np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), case["aug_labels" + suffix])
        np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), case["aug_len" + suffix])


@pytest.mark.parametrize("name", CASES)
def test_mirrored_functions(name):
    case = golden.case(name)
    labels, labels_len = torch.tensor(case["aug_labels"]), torch.tensor(case["aug_len"])
    table = S.label_trans_table(labels, labels_len)
    assert_matches(table, case["trans_table"], tol.LOG_PROB, what="trans_table")
    softmax = torch.softmax(torch.tensor(case["logits"]), dim=-1)
    if FINITE[name]:
        llp = S.calculate_log_label_prob(labels, softmax)
        assert_matches(llp, case["log_label_prob"], tol.LOG_PROB, what="log_label_prob")
        # From the recorded table and log label probabilities, as the original's tests do.
        alpha, beta, final = S.calculate_alpha_beta(
            torch.tensor(case["trans_table"]), torch.tensor(case["log_label_prob"]), labels_len,
            torch.tensor(case["logits_len"]))
        assert_matches(alpha, case["alpha"], tol.LOG_PROB, what="alpha")
        assert_matches(beta, case["beta"], tol.LOG_PROB, what="beta")
        assert_matches(final, case["log_seq_prob_final"], tol.LOG_PROB, what="final")


@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
@pytest.mark.parametrize("name", CASES)
def test_loss_and_gradient(name, weighted):
    case = golden.case(name)
    labels, labels_len = torch.tensor(case["aug_labels"]), torch.tensor(case["aug_len"])
    logits = torch.tensor(case["logits"]).requires_grad_(True)
    loss = S.ctc_loss(labels, labels_len, logits, torch.tensor(case["logits_len"]))
    incoming = torch.tensor(case["upstream_weights"]) if weighted else torch.ones_like(loss)
    loss.backward(incoming)
    assert_matches(loss, case["loss"], tol.LOSS, what="loss")
    assert_matches(logits.grad, case["grad_weighted" if weighted else "grad"], tol.GRAD,
                   what="grad")


@pytest.mark.parametrize("name", [n for n in CASES if not FINITE[n]])
def test_non_finite_cases_are_exact(name):
    """Where the original overflows, the port equals the float64 reference."""
    from parity_tests import reference

    case = golden.case(name)
    logits = torch.tensor(case["logits"]).requires_grad_(True)
    loss = S.ctc_loss(torch.tensor(case["aug_labels"]), torch.tensor(case["aug_len"]), logits,
                      torch.tensor(case["logits_len"]))
    loss.sum().backward()
    want_loss, want_grad = reference.ctc_batch(case["aug_labels"], case["aug_len"],
                                               case["logits"], case["logits_len"])
    assert_matches(loss, want_loss, tol.LOSS, what="loss")
    assert_matches(logits.grad, want_grad, tol.GRAD, what="grad")
