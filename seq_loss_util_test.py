"""Unit tests for seq_loss_util, mirroring the TensorFlow original's test module.

The original's tests are reproduced with their inputs and expected numbers (taken
from the recorded ``unit_test_*`` data). The tests after them check every place
where the port does better than the original, and every input error.

Run as ``python seq_loss_util_test.py`` (unittest) or under ``pytest``.
"""
import contextlib
import math
import unittest

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S
from parity_tests import golden, reference, tolerances as tol
from parity_tests.cases import tight_lengths


def assert_close(got, want, atol, rtol, msg=""):
    tol.assert_within(got, want, dict(atol=atol, rtol=rtol), msg)


@contextlib.contextmanager
def count_host_reads():
    """Counts the reads of tensor values into Python (a host sync on a GPU)."""
    calls = [0]
    saved = {name: getattr(torch.Tensor, name)
             for name in ("item", "__int__", "__bool__", "__float__", "tolist", "numpy")}

    def counting(f):
        def counted(self, *args, **kwargs):
            calls[0] += 1
            return f(self, *args, **kwargs)
        return counted

    for name, f in saved.items():
        setattr(torch.Tensor, name, counting(f))
    try:
        yield calls
    finally:
        for name, f in saved.items():
            setattr(torch.Tensor, name, f)


def augmented(name):
    """Blank-augmented labels of a recorded case, as torch tensors."""
    case, blank = golden.case(name), golden.blank_index(name)
    aug = S.to_blank_augmented_labels(
        {"SEQ_DATA": torch.tensor(case["raw_labels"]), "SEQ_LEN": torch.tensor(case["raw_len"])},
        blank, True)
    return aug["SEQ_DATA"], aug["SEQ_LEN"]


def loss_and_grad(labels, labels_len, logits, logits_len, weights=None):
    x = torch.as_tensor(logits).clone().requires_grad_(True)
    loss = S.ctc_loss(labels, labels_len, x, torch.as_tensor(logits_len))
    loss.backward(torch.ones_like(loss) if weights is None else weights)
    return loss.detach(), x.grad


class OriginalUnitTests(unittest.TestCase):
    """The original module's own tests, same inputs, same expected numbers."""

    def test_log_0(self):
        self.assertAlmostEqual(S.LOG_0, -706.8936157226562, places=10)
        self.assertEqual(S.log_0, S.LOG_0)
        self.assertEqual(S.LOG_0, float(np.float32(math.log(1e-307))))

    def test_to_blank_augmented_labels(self):
        case = golden.case("unit_test_augment")
        inputs = {"SEQ_DATA": torch.tensor(case["raw_labels"]),
                  "SEQ_LEN": torch.tensor(case["raw_len"])}
        for blank in (0, 6):
            for boundary in (True, False):
                with self.subTest(blank=blank, boundary_blanks=boundary):
                    out = S.to_blank_augmented_labels(inputs, blank, boundary)
                    key = f"blank{blank}_boundary{int(boundary)}"
                    np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), case[f"{key}/labels"])
                    np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), case[f"{key}/len"])
                    self.assertEqual(out["SEQ_DATA"].dtype, torch.int32)
                    self.assertEqual(out["SEQ_LEN"].dtype, torch.int32)

    def test_label_trans_table(self):
        case = golden.case("unit_test_trans_table")
        table = S.label_trans_table(torch.tensor(case["labels"]), torch.tensor(case["len"]))
        self.assertEqual(table.dtype, torch.float32)
        assert_close(table, case["table"], **tol.LOG_PROB)

    def test_calculate_log_label_prob(self):
        case = golden.case("unit_test_log_label_prob")
        softmax = torch.softmax(torch.tensor(case["logits"]), dim=-1)
        got = S.calculate_log_label_prob(torch.tensor(case["labels"]), softmax)
        assert_close(got, case["log_label_prob"], **tol.LOG_PROB)

    def test_calculate_alpha_beta(self):
        case = golden.case("unit_test_alpha_beta")
        alpha, beta, final = S.calculate_alpha_beta(
            torch.tensor(case["trans_table"]), torch.tensor(case["log_label_prob"]),
            torch.tensor(case["len"]), torch.tensor(case["logits_len"]))
        assert_close(alpha, case["alpha"], **tol.LOG_PROB, msg="alpha")
        assert_close(beta, case["beta"], **tol.LOG_PROB, msg="beta")
        assert_close(final, case["log_seq_prob_final"], **tol.LOG_PROB, msg="final")

    def _example(self):
        case = golden.case("unit_test_example")
        labels, labels_len = augmented("unit_test_example")
        return case, labels, labels_len, torch.tensor(case["logits"]), torch.tensor(case["logits_len"])

    def test_ctc_loss(self):
        case, labels, labels_len, logits, logits_len = self._example()
        loss = S.ctc_loss(labels, labels_len, logits, logits_len)
        assert_close(loss, [6.115841, 4.7813644], **tol.LOSS)

    def test_ctc_loss_gradient(self):
        case, labels, labels_len, logits, logits_len = self._example()
        _, grad = loss_and_grad(labels, labels_len, logits, logits_len)
        assert_close(grad, case["grad"], **tol.UNIT_TEST_GRAD)

    def test_ctc_loss_class_apply(self):
        case, labels, labels_len, logits, logits_len = self._example()
        x = logits.clone().requires_grad_(True)
        loss = S.CtcLoss.apply(labels, labels_len, x, logits_len)
        loss.sum().backward()
        assert_close(loss, [6.115841, 4.7813644], **tol.LOSS)
        assert_close(x.grad, case["grad"], **tol.UNIT_TEST_GRAD)


class MirroredFunctionTests(unittest.TestCase):
    """Closed-form checks of the mirrored helpers beyond the original's tests."""

    def test_initial_log_seq_prob(self):
        start, end = S.calculate_initial_log_seq_prob(torch.tensor([3, 5, 1]))
        want_start = np.full((3, 5), S.LOG_0, np.float32)
        want_start[:, 0] = 0
        want_end = np.full((3, 5), S.LOG_0, np.float32)
        want_end[[0, 1, 2], [2, 4, 0]] = 0
        np.testing.assert_array_equal(start.numpy(), want_start)
        np.testing.assert_array_equal(end.numpy(), want_end)
        self.assertEqual(start.dtype, torch.float32)

    def test_augment_empty_label(self):
        inputs = {"SEQ_DATA": torch.tensor([[3, 1], [0, 0]]), "SEQ_LEN": torch.tensor([2, 0])}
        out = S.to_blank_augmented_labels(inputs, 0, True)
        np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), [[0, 4, 0, 2, 0], [0, 0, 0, 0, 0]])
        np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), [5, 1])
        out = S.to_blank_augmented_labels(inputs, 0, False)
        np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), [3, 0])
        self.assertEqual(out["SEQ_DATA"].dtype, torch.int64)

    @settings(max_examples=40, deadline=None)
    @given(st.data())
    def test_trans_table_rule(self, data):
        """Every entry follows the stay / advance / skip-unless-equal rule."""
        batch = data.draw(st.integers(1, 4))
        width = data.draw(st.integers(1, 9))
        labels = np.array(data.draw(st.lists(st.lists(st.integers(0, 3), min_size=width,
                                                      max_size=width), min_size=batch,
                                             max_size=batch)))
        lens = np.array(data.draw(st.lists(st.integers(1, width), min_size=batch,
                                           max_size=batch)))
        lens[0] = width
        table = S.label_trans_table(torch.tensor(labels), torch.tensor(lens)).numpy()
        for b in range(batch):
            for i in range(width):
                for j in range(width):
                    ok = j in (i, i + 1) or (j == i + 2 and labels[b, i] != labels[b, j])
                    self.assertEqual(table[b, i, j], 0.0 if ok else np.float32(S.LOG_0))


class CourseAuthorPortTests(unittest.TestCase):
    """Calls written against the course author's own PyTorch port, and the helper the
    assignment names."""

    def test_four_argument_call_keeps_ids(self):
        inputs = {"SEQ_DATA": torch.tensor([[1, 2, 3], [3, 1, 0]]), "SEQ_LEN": torch.tensor([3, 2])}
        out = S.to_blank_augmented_labels(inputs, 0, True, False)
        np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), [[0, 1, 0, 2, 0, 3, 0],
                                                                [0, 3, 0, 1, 0, 0, 0]])
        np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), [7, 5])
        out = S.to_blank_augmented_labels(inputs, 5, False, update_non_blank_token_index=False)
        np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), [[1, 5, 2, 5, 3], [3, 5, 1, 0, 0]])
        np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), [5, 3])

    def test_four_argument_call_on_recorded_data(self):
        """Ids shifted by the caller, then kept: the original's recorded output."""
        case = golden.case("unit_test_augment")
        raw, raw_len = torch.tensor(case["raw_labels"]), torch.tensor(case["raw_len"])
        for blank in (0, 6):
            shifted = torch.where(raw >= blank, raw + 1, raw)
            for boundary in (True, False):
                with self.subTest(blank=blank, boundary_blanks=boundary):
                    out = S.to_blank_augmented_labels({"SEQ_DATA": shifted, "SEQ_LEN": raw_len},
                                                      blank, boundary, False)
                    key = f"blank{blank}_boundary{int(boundary)}"
                    np.testing.assert_array_equal(out["SEQ_DATA"].numpy(), case[f"{key}/labels"])
                    np.testing.assert_array_equal(out["SEQ_LEN"].numpy(), case[f"{key}/len"])

    def test_kept_ids_must_leave_out_the_blank(self):
        inputs = {"SEQ_DATA": torch.tensor([[1, 0, 2]]), "SEQ_LEN": torch.tensor([3])}
        with self.assertRaisesRegex(ValueError, "blank id 0 at example 0, position 1"):
            S.to_blank_augmented_labels(inputs, 0, True, False)
        with self.assertRaisesRegex(ValueError, "label id 4 .* below 4 for C=4"):
            S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 4]]),
                                         "SEQ_LEN": torch.tensor([2])}, 0, True, False,
                                        num_classes=4)

    def test_unnormalized_log_seq_prob_known_values(self):
        gamma = torch.tensor([[[0.0, -1.0, -2.0], [-0.5, 0.0, -3.0], [-4.0, -0.25, 0.0]],
                              [[0.0, -9.0, -9.0], [-0.75, 0.0, -9.0], [0.0, 0.0, 0.0]],
                              [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                              [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # (4, 3, 3)
        accum = torch.tensor([[1.0, 2.0, 3.5], [-1.0, -2.0, -6.0], [5.0, 6.0, 7.0],
                              [5.0, 6.0, 7.0]])  # (4, 3)
        logit_len = torch.tensor([3, 2, 0, 0])
        label_len = torch.tensor([3, 1, 2, 3])
        got = S._calculate_unnormalized_log_seq_prob(gamma, accum, logit_len, label_len)
        want = [max(0.0, -0.25) + 3.5,  # frame 2, states 2 and 1
                -0.75 - 2.0,  # frame 1, the single state 0 (L_b = 1)
                0.0,  # no frames: the start vector, 0 in state 0 = L_b - 2
                S.LOG_0]  # no frames, L_b = 3: states 2 and 1 start at LOG_0
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)

    def test_alpha_beta_calls_the_helper(self):
        """The recorded log_seq_prob_final, through the helper alone."""
        from unittest import mock

        case = golden.case("unit_test_alpha_beta")
        with mock.patch.object(S, "_calculate_unnormalized_log_seq_prob",
                               wraps=S._calculate_unnormalized_log_seq_prob) as helper:
            _, _, final = S.calculate_alpha_beta(
                torch.tensor(case["trans_table"]), torch.tensor(case["log_label_prob"]),
                torch.tensor(case["len"]), torch.tensor(case["logits_len"]))
        helper.assert_called_once()
        assert_close(final, case["log_seq_prob_final"], **tol.LOG_PROB)


class BeyondTheOriginalTests(unittest.TestCase):
    """Where the original overflows or raises, the port returns correct numbers."""

    def check_against_reference(self, labels, labels_len, logits, logits_len):
        loss, grad = loss_and_grad(labels, labels_len, logits, logits_len)
        want_loss, want_grad = reference.ctc_batch(labels.numpy(), labels_len.numpy(),
                                                   np.asarray(logits), np.asarray(logits_len))
        self.assertTrue(torch.isfinite(loss).all() and torch.isfinite(grad).all())
        assert_close(loss, want_loss, **tol.LOSS, msg="loss")
        assert_close(grad, want_grad, **tol.GRAD, msg="grad")
        return loss, grad

    def test_extreme_logits_are_finite_and_correct(self):
        case = golden.case("extreme_logits")  # the original gives NaN here
        labels, labels_len = augmented("extreme_logits")
        self.check_against_reference(labels, labels_len, torch.tensor(case["logits"]),
                                     torch.tensor(case["logits_len"]))

    def test_garbage_in_padded_frames(self):
        case = golden.case("garbage_in_padding")  # the original's gradient is NaN here
        labels, labels_len = augmented("garbage_in_padding")
        logits_len = torch.tensor(case["logits_len"])
        logits = torch.tensor(case["logits"])
        padded = torch.arange(logits.shape[1])[None, :] >= logits_len[:, None]
        clean_loss, clean_grad = loss_and_grad(labels, labels_len,
                                               logits.masked_fill(padded[..., None], 0.0),
                                               logits_len)
        for fill in (float("nan"), float("inf"), -float("inf"), 1e30, None):
            with self.subTest(fill=fill):
                dirty = logits if fill is None else logits.masked_fill(padded[..., None], fill)
                loss, grad = loss_and_grad(labels, labels_len, dirty, logits_len)
                self.assertTrue(torch.equal(loss, clean_loss))
                self.assertTrue(torch.equal(grad, clean_grad))
                self.assertTrue(bool((grad[padded] == 0).all()))
        self.check_against_reference(labels, labels_len, logits, logits_len)

    def test_empty_label_is_the_all_blank_path(self):
        case = golden.case("zero_length_label")  # the original raises here
        labels, labels_len = augmented("zero_length_label")
        logits, logits_len = torch.tensor(case["logits"]), torch.tensor(case["logits_len"])
        loss, grad = self.check_against_reference(labels, labels_len, logits, logits_len)
        b = int(np.flatnonzero(case["raw_len"] == 0)[0])
        log_probs = torch.log_softmax(logits[b].double(), dim=-1)
        assert_close(loss[b], -log_probs[:, 0].sum(), **tol.LOSS)
        want = log_probs.exp()
        want[:, 0] -= 1.0  # softmax minus one-hot(blank): one path, posterior 1
        assert_close(grad[b], want, **tol.GRAD)

    def test_label_padding_wider_than_longest_label(self):
        case = golden.case("padded_wider_than_max")  # the original raises here
        labels, labels_len = augmented("padded_wider_than_max")
        logits, logits_len = torch.tensor(case["logits"]), torch.tensor(case["logits_len"])
        loss, grad = self.check_against_reference(labels, labels_len, logits, logits_len)
        trimmed = labels[:, : int(labels_len.max())]
        self.assertLess(trimmed.shape[1], labels.shape[1])
        loss_t, grad_t = loss_and_grad(trimmed, labels_len, logits, logits_len)
        self.assertTrue(torch.equal(loss, loss_t) and torch.equal(grad, grad_t))

    def test_time_axis_wider_than_longest_input(self):
        case = golden.case("lengths_shorter_than_width")  # the original raises here
        labels, labels_len = augmented("lengths_shorter_than_width")
        logits, logits_len = torch.tensor(case["logits"]), torch.tensor(case["logits_len"])
        loss, grad = self.check_against_reference(labels, labels_len, logits, logits_len)
        t_max = int(logits_len.max())
        self.assertLess(t_max, logits.shape[1])
        loss_t, grad_t = loss_and_grad(labels, labels_len, logits[:, :t_max], logits_len)
        self.assertTrue(torch.equal(loss, loss_t))
        self.assertTrue(torch.equal(grad[:, :t_max], grad_t))
        self.assertTrue(bool((grad[:, t_max:] == 0).all()))

    def test_mirrored_alpha_beta_accepts_wider_time_axis(self):
        """calculate_alpha_beta on a padded time axis equals it on the trimmed one."""
        case = golden.case("unit_test_alpha_beta")
        args = [torch.tensor(case[k]) for k in ("trans_table", "log_label_prob", "len",
                                                "logits_len")]
        wide = torch.cat([args[1], torch.full((3, 4, 5), float("nan"))], dim=1)
        alpha, beta, final = S.calculate_alpha_beta(args[0], wide, args[2], args[3])
        assert_close(alpha[:, :6], case["alpha"], **tol.LOG_PROB)
        assert_close(beta[:, :6], case["beta"], **tol.LOG_PROB)
        assert_close(final, case["log_seq_prob_final"], **tol.LOG_PROB)

    def test_float64_computes_in_float64(self):
        case = golden.case("random_02")
        labels, labels_len = augmented("random_02")
        logits = torch.tensor(case["logits"], dtype=torch.float64)
        loss, grad = loss_and_grad(labels, labels_len, logits, torch.tensor(case["logits_len"]))
        self.assertEqual((loss.dtype, grad.dtype), (torch.float64, torch.float64))
        want_loss, want_grad = reference.ctc_batch(labels.numpy(), labels_len.numpy(),
                                                   logits.numpy(), case["logits_len"])
        assert_close(loss, want_loss, atol=1e-9, rtol=1e-12)
        assert_close(grad, want_grad, atol=1e-9, rtol=0)

    def test_half_precision_computes_in_float32(self):
        case = golden.case("random_05")
        labels, labels_len = augmented("random_05")
        logits_len = torch.tensor(case["logits_len"])
        for dtype in (torch.float16, torch.bfloat16):
            with self.subTest(dtype=dtype):
                low = torch.tensor(case["logits"]).to(dtype)
                loss, grad = loss_and_grad(labels, labels_len, low, logits_len)
                loss32, grad32 = loss_and_grad(labels, labels_len, low.float(), logits_len)
                # The loss in float32, as native CTC under autocast; the gradient in
                # the input's dtype.
                self.assertEqual((loss.dtype, grad.dtype), (torch.float32, dtype))
                self.assertTrue(torch.equal(loss, loss32))
                self.assertTrue(torch.equal(grad, grad32.to(dtype)))

    def test_weighted_incoming_gradient(self):
        case = golden.case("random_09")
        labels, labels_len = augmented("random_09")
        weights = torch.tensor(case["upstream_weights"])
        _, grad = loss_and_grad(labels, labels_len, torch.tensor(case["logits"]),
                                torch.tensor(case["logits_len"]), weights)
        assert_close(grad, case["grad_weighted"], **tol.GRAD)

    def test_masked_examples_get_zero_loss_and_gradient(self):
        case = golden.case("feasible_but_short")
        labels, labels_len = augmented("feasible_but_short")
        loss, grad = loss_and_grad(labels, labels_len, torch.tensor(case["logits"]),
                                   torch.tensor(case["logits_len"]))
        self.assertTrue(bool((loss == 0).all()) and bool((grad == 0).all()))

    def test_zero_frames(self):
        labels = torch.tensor([[0, 1, 0], [0, 0, 0]])
        logits = torch.randn(2, 4, 3)
        loss, grad = loss_and_grad(labels, torch.tensor([3, 1]), logits, torch.tensor([0, 0]))
        self.assertTrue(bool((loss == 0).all()) and bool((grad == 0).all()))
        # Exact: no frames align only the empty label (probability 1); the other is
        # infeasible. Mixed with a normal example, the same holds per example.
        x = logits.clone().requires_grad_(True)
        exact = S.ctc_loss(labels, torch.tensor([3, 1]), x, torch.tensor([4, 0]), exact=True)
        exact.sum().backward()
        exact = exact.detach()
        self.assertTrue(bool(torch.isfinite(exact[0])) and float(exact[1]) == 0.0)
        self.assertTrue(bool((x.grad[1] == 0).all()))
        with self.assertWarnsRegex(UserWarning, r"1 example\(s\) cannot be aligned.*0 \(0 frames"):
            none = S.ctc_loss(labels, torch.tensor([3, 1]), logits, torch.tensor([0, 0]),
                              exact=True)
        self.assertEqual(none.tolist(), [math.inf, 0.0])

    def test_empty_batch(self):
        x = torch.zeros(0, 4, 3, requires_grad=True)
        loss = S.ctc_loss(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                          x, torch.zeros(0, dtype=torch.long))
        loss.sum().backward()
        self.assertEqual((tuple(loss.shape), tuple(x.grad.shape)), ((0,), (0, 4, 3)))

    def test_no_host_sync_per_frame(self):
        """The number of host reads is the same for 8 frames as for 64."""
        counts = []
        for frames in (8, 64):
            with count_host_reads() as calls:
                labels = torch.tensor([[0, 1, 0, 2, 0]])
                # Negative scores in frame 0, so the probability check stops at one read.
                x = (torch.randn(1, frames, 3) - 10).requires_grad_(True)
                S.ctc_loss(labels, torch.tensor([5]), x, torch.tensor([frames])).sum().backward()
            counts.append(calls[0])
        self.assertEqual(counts[0], counts[1])

    def test_checks_share_one_host_read(self):
        """Every input check of ctc_loss, the infeasibility warning's test and those of
        CtcLossModule read the host once together, for a whole training step (forward
        and backward), in both modes: one device sync per step on a GPU."""
        labels = S.to_blank_augmented_labels({"SEQ_DATA": torch.randint(1, 9, (8, 20)),
                                              "SEQ_LEN": torch.full((8,), 20)}, 0)
        for exact in (False, True):
            x = torch.randn(8, 200, 10, requires_grad=True)
            with count_host_reads() as calls:
                loss = S.ctc_loss(labels["SEQ_DATA"], labels["SEQ_LEN"], x,
                                  torch.full((8,), 200), exact=exact)
                loss.sum().backward()
            # The C kernel, where it is built, makes the checks reading memory itself: none.
            reads = 0 if S._kernel_backend() is not None else 1
            self.assertEqual(calls[0], reads, f"exact={exact}")
        raw = torch.randint(1, 10, (8, 20))
        raw[3, 12:] = -100  # Hugging Face's padding
        for labels_len in (None, torch.full((8,), 20)):
            x = torch.randn(8, 200, 10, requires_grad=True)
            with count_host_reads() as calls:
                S.CtcLossModule()(x, raw if labels_len is None else raw.clamp(min=1),
                                  torch.full((8,), 200), labels_len).backward()
            self.assertEqual(calls[0], 1, f"labels_len={labels_len}")

    def test_inputs_are_not_modified(self):
        case = golden.case("garbage_in_padding")
        labels, labels_len = augmented("garbage_in_padding")
        logits = torch.tensor(case["logits"])
        logits_len = torch.tensor(case["logits_len"])
        before = [t.clone() for t in (labels, labels_len, logits, logits_len)]
        loss_and_grad(labels, labels_len, logits, logits_len)
        table = S.label_trans_table(labels, labels_len)
        llp = S.calculate_log_label_prob(labels, torch.softmax(logits, -1))
        S.calculate_alpha_beta(table, llp, labels_len, logits_len)
        for old, new in zip(before, (labels, labels_len, logits, logits_len), strict=True):
            self.assertTrue(torch.equal(old, new))

    @unittest.skipUnless(torch.cuda.is_available(), "needs a CUDA device")
    def test_cuda_matches_cpu(self):
        case = golden.case("long_sequence")
        labels, labels_len = augmented("long_sequence")
        logits, logits_len = torch.tensor(case["logits"]), torch.tensor(case["logits_len"])
        loss, grad = loss_and_grad(labels.cuda(), labels_len.cuda(), logits.cuda(),
                                   logits_len.cuda())
        self.assertEqual(loss.device.type, "cuda")
        assert_close(loss, case["loss"], **tol.LOSS)
        assert_close(grad, case["grad"], **tol.GRAD)

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_random_batches_match_reference(self, data):
        """Random shapes, repeats, any blank, garbage padding: the float64 reference."""
        batch = data.draw(st.integers(1, 4))
        classes = data.draw(st.integers(2, 8))
        blank = data.draw(st.integers(0, classes - 1))
        width = data.draw(st.integers(0, 6))
        raw_len = np.array(data.draw(st.lists(st.integers(0, width), min_size=batch,
                                              max_size=batch)))
        # A one- or two-letter alphabet often, so adjacent repeats are common.
        alphabet = data.draw(st.sampled_from([1, min(2, classes - 1), classes - 1]))
        raw = np.array(data.draw(st.lists(st.lists(st.integers(0, alphabet - 1), min_size=width,
                                                   max_size=width),
                                          min_size=batch, max_size=batch)),
                       dtype=np.int64).reshape(batch, width)
        frames = data.draw(st.integers(1, 20))
        logits_len = np.array(data.draw(st.lists(st.integers(0, frames), min_size=batch,
                                                 max_size=batch)))
        if data.draw(st.booleans()):  # T = U + repeats, one fewer, or 2U + 1 on purpose
            rng_tight = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
            logits_len = tight_lengths(rng_tight, raw, raw_len)
            frames = max(frames, int(logits_len.max()))
        scale = data.draw(st.sampled_from([0.5, 3.0, 30.0]))
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        logits = (rng.standard_normal((batch, frames, classes)) * scale).astype(np.float32)
        logits[np.arange(frames)[None, :] >= logits_len[:, None]] = np.nan
        aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor(raw),
                                           "SEQ_LEN": torch.tensor(raw_len)}, blank, True)
        self.check_against_reference(aug["SEQ_DATA"], aug["SEQ_LEN"], torch.tensor(logits),
                                     torch.tensor(logits_len))


class InputErrorTests(unittest.TestCase):
    """Bad input fails before any computation, with a message naming the argument."""

    def setUp(self):
        self.labels = torch.tensor([[0, 1, 0, 2, 0], [0, 3, 0, 0, 0]])
        self.labels_len = torch.tensor([5, 3])
        self.logits = torch.randn(2, 6, 4)
        self.logits_len = torch.tensor([6, 4])

    def call(self, **over):
        args = dict(labels=self.labels, labels_len=self.labels_len, logits=self.logits,
                    logits_len=self.logits_len)
        args.update(over)
        return S.ctc_loss(args["labels"], args["labels_len"], args["logits"], args["logits_len"])

    def assert_raises(self, error, pattern, **over):
        with self.assertRaisesRegex(error, pattern):
            self.call(**over)

    def test_non_integer_labels(self):
        self.assert_raises(TypeError, "labels must be an integer", labels=self.labels.float())
        self.assert_raises(TypeError, "labels_len must be an integer",
                           labels_len=self.labels_len.float())
        self.assert_raises(TypeError, "logits_len must be an integer",
                           logits_len=self.logits_len.bool())

    def test_non_float_logits(self):
        self.assert_raises(TypeError, "logits must be a floating-point",
                           logits=self.logits.long())

    def test_wrong_ranks(self):
        self.assert_raises(ValueError, r"labels must have shape \(B, L\)", labels=self.labels[0])
        self.assert_raises(ValueError, r"logits must have shape \(B, T, C\)",
                           logits=self.logits[0])
        self.assert_raises(ValueError, r"labels_len must have shape \(B,\)",
                           labels_len=self.labels_len[:, None])
        self.assert_raises(ValueError, r"logits_len must have shape \(B,\)",
                           logits_len=self.logits_len[:, None])

    def test_batch_sizes_disagree(self):
        self.assert_raises(ValueError, "labels has batch size 1, expected 2",
                           labels=self.labels[:1])
        self.assert_raises(ValueError, "logits_len has batch size 3",
                           logits_len=torch.tensor([6, 4, 4]))

    def test_negative_length(self):
        self.assert_raises(ValueError, "logits_len must be >= 0, got -1 for example 1",
                           logits_len=torch.tensor([6, -1]))
        self.assert_raises(ValueError, "labels_len must be >= 0",
                           labels_len=torch.tensor([5, -3]))

    def test_length_beyond_padded_axis(self):
        self.assert_raises(ValueError, r"logits_len must be <= the padded time axis of logits "
                           r"\(6\), got 7", logits_len=torch.tensor([7, 4]))
        self.assert_raises(ValueError, r"labels_len must be <= the padded label axis",
                           labels_len=torch.tensor([7, 3]))

    def test_even_augmented_length(self):
        self.assert_raises(ValueError, "labels_len must be odd", labels_len=torch.tensor([4, 3]))

    def test_label_id_out_of_range(self):
        case = golden.case("label_out_of_range")  # the original's error names a gather
        labels, labels_len = augmented("label_out_of_range")
        with self.assertRaisesRegex(ValueError, r"id 5 .*outside \[0, 4\].*C=5"):
            S.ctc_loss(labels, labels_len, torch.tensor(case["logits"]),
                       torch.tensor(case["logits_len"]))
        self.assert_raises(ValueError, "id -1", labels=torch.tensor([[0, -1, 0, 2, 0],
                                                                      [0, 3, 0, 0, 0]]))

    def test_bad_blank_index(self):
        inputs = {"SEQ_DATA": torch.tensor([[1, 2]]), "SEQ_LEN": torch.tensor([2])}
        with self.assertRaisesRegex(ValueError, "blank_index must be >= 0"):
            S.to_blank_augmented_labels(inputs, -1)
        with self.assertRaisesRegex(TypeError, "blank_index must be an int"):
            S.to_blank_augmented_labels(inputs, 1.5)
        with self.assertRaisesRegex(ValueError, r"blank_index 4 is outside the vocabulary "
                                                r"\[0, 3\]"):
            S.to_blank_augmented_labels(inputs, 4, num_classes=4)
        with self.assertRaisesRegex(ValueError, "raw label id 3 .* C=4"):
            S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 3]]),
                                         "SEQ_LEN": torch.tensor([2])}, 0, num_classes=4)

    def test_augment_input_errors(self):
        with self.assertRaisesRegex(TypeError, "SEQ_DATA"):
            S.to_blank_augmented_labels({"SEQ_DATA": torch.zeros(1, 2)}, 0)
        with self.assertRaisesRegex(TypeError, "must be an integer"):
            S.to_blank_augmented_labels({"SEQ_DATA": torch.zeros(1, 2),
                                         "SEQ_LEN": torch.tensor([2])}, 0)
        with self.assertRaisesRegex(ValueError, "negative label id"):
            S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, -2]]),
                                         "SEQ_LEN": torch.tensor([2])}, 0)
        with self.assertRaisesRegex(ValueError, "must be <= the padded label axis"):
            S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 2]]),
                                         "SEQ_LEN": torch.tensor([3])}, 0)

    def test_mirrored_function_errors(self):
        with self.assertRaisesRegex(ValueError, r"label_trans_table must have shape \(B, L, L\)"):
            S.calculate_alpha_beta(torch.zeros(2, 4, 4), torch.zeros(2, 6, 5),
                                   torch.tensor([5, 3]), torch.tensor([6, 4]))
        with self.assertRaisesRegex(ValueError, "labels holds id 7"):
            S.calculate_log_label_prob(torch.tensor([[0, 7, 0]]), torch.full((1, 2, 4), 0.25))
        with self.assertRaisesRegex(TypeError, "softmax_output must be a floating-point"):
            S.calculate_log_label_prob(torch.tensor([[0, 1, 0]]), torch.ones(1, 2, 4,
                                                                               dtype=torch.long))


if __name__ == "__main__":
    unittest.main()
