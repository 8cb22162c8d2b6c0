"""The port against the TF reference on identical random inputs (hypothesis).

Batch 1 to 8, T up to 200, C from 2 to 60, label lengths 0 to 40 with repeats, any
blank index, padded frames holding arbitrary values, lengths shorter than the padded
axes. Both sides are measured against the float64 truth (``check.py``): the port
must meet the bounds, and so must TF wherever it returns finite numbers.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from parity_tests import golden
from parity_tests.cases import Case, random_case
from parity_tests.check import check_case

pytestmark = pytest.mark.needs_tf


@pytest.fixture(scope="module")
def tf_runner():
    from parity_tests.tf_side import runner

    return runner()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 8), max_time=st.integers(1, 200), classes=st.integers(2, 60),
       max_label=st.integers(0, 40), scale=st.sampled_from([0.3, 1.0, 4.0, 10.0]),
       pad_labels=st.integers(0, 3), pad_time=st.integers(0, 5), garbage=st.booleans(),
       seed=st.integers(0, 2**32 - 1), data=st.data())
def test_port_matches_tf_on_random_batches(tf_runner, batch, max_time, classes, max_label,
                                           scale, pad_labels, pad_time, garbage, seed, data):
    blank = data.draw(st.integers(0, classes - 1), label="blank")
    # Some draws keep T long enough for the labels (fewer masked examples); some allow
    # empty labels and zero frames, where the original raises and float64 judges.
    min_time = data.draw(st.sampled_from([0, 1, min(max_time, 2 * max_label + 1)]),
                         label="min_time")
    min_label = data.draw(st.sampled_from([0, 1, 1]), label="min_label")
    case = random_case(np.random.default_rng(seed), batch=batch, max_time=max_time,
                       max_label=max_label, classes=classes, blank=blank, scale=scale,
                       pad_labels=pad_labels, pad_time=pad_time, garbage=garbage,
                       min_time=min_time, min_label=min_label)
    result = check_case(case, tf_runner)
    event(f"TF {result.tf_state}" + (f" ({result.why})" if result.why else ""))
    assert result.passed, result
    # At these sizes TF's float32 stays within the same bounds wherever it is finite.
    assert result.tf_state != "off", result


@pytest.mark.parametrize("failure", [c["name"] for c in golden.upstream_failures()
                                     if c["name"] != "label_out_of_range"])
def test_recorded_upstream_failures(tf_runner, failure):
    """Inputs the original raised on: the port is checked, TF or float64 judging."""
    import torch

    import seq_loss_util as S

    rec = golden.case(failure)
    blank = golden.blank_index(failure)
    aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor(rec["raw_labels"]),
                                       "SEQ_LEN": torch.tensor(rec["raw_len"])}, blank, True)
    case = Case(rec["raw_labels"], rec["raw_len"], blank, aug["SEQ_DATA"].numpy(),
                aug["SEQ_LEN"].numpy(), rec["logits"], rec["logits_len"],
                np.ones(len(rec["raw_len"]), np.float32))
    result = check_case(case, tf_runner)
    assert result.passed, result
