"""The comparison tolerances, stated once for every test and for the comparison.

A value passes when ``|got - want| <= atol + rtol * |want|`` elementwise (float32).
"""
LOSS = dict(atol=1e-4, rtol=1e-5)
GRAD = dict(atol=1e-4, rtol=0.0)
# alpha, beta, log_seq_prob_final and log_label_prob.
LOG_PROB = dict(atol=1e-4, rtol=1e-4)
# The original's unit test checks its gradient more tightly.
UNIT_TEST_GRAD = dict(atol=1e-5, rtol=0.0)
