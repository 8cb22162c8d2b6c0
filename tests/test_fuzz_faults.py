"""The faults a sanitizer-built fuzzing run found, each built here, and the checks that
keep every value a kernel trusts from reaching it unchecked: through the public
functions and through the registered operators, eager or under ``torch.compile``.

The C kernels index memory with the label ids and lengths they are given; so do the
Triton kernels, which have no bounds checks either. A label id past C once read outside
the logits, and a ``logits_len`` past T aborted the process, when ``forced_align`` was
compiled (its Python checks were traced away) or its operator called directly.
"""
import math
import re

import numpy as np
import pytest
import torch

import ctc_decoder as D
import seq_loss_util as S
from ngram_lm import NgramLM
from optional_deps import both_searches, need_c_kernel, use_backend

OPS = pytest.mark.skipif(S._OPS is None, reason="torch.library.custom_op needs torch>=2.4")


def augmented_batch():
    """Blank-augmented labels, lengths and logits for a batch of two: ``(labels (2, 5),
    labels_len, logits (2, 6, 5), logits_len)``."""
    logits = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([[0, 1, 0, 2, 0], [0, 3, 0, 0, 0]])
    return labels, torch.tensor([5, 3]), logits, torch.tensor([6, 4])


def with_fault(kind):
    """The batch above with one bad value, as a user or a compiled graph could pass it."""
    labels, labels_len, logits, logits_len = augmented_batch()
    if kind == "id past C":
        labels[0, 3] = 7
    elif kind == "negative id":
        labels[1, 1] = -3
    elif kind == "huge id":
        labels[0, 1] = 2**62
    elif kind == "labels_len past L":
        labels_len = torch.tensor([5, 7])
    elif kind == "negative labels_len":
        labels_len = torch.tensor([-1, 3])
    elif kind == "even labels_len":
        labels_len = torch.tensor([4, 3])
    elif kind == "logits_len past T":
        logits_len = torch.tensor([4000, 4])
    elif kind == "negative logits_len":
        logits_len = torch.tensor([6, -2])
    elif kind == "batch sizes differ":
        labels_len = torch.tensor([5, 3, 3])
    elif kind == "labels of rank 1":
        labels = labels[0]
    else:
        raise AssertionError(kind)
    return labels, labels_len, logits, logits_len


FAULTS = ["id past C", "negative id", "huge id", "labels_len past L", "negative labels_len",
          "even labels_len", "logits_len past T", "negative logits_len", "batch sizes differ",
          "labels of rank 1"]


def eager_error(fn, *args, **kwargs):
    """The exception ``fn`` raises eagerly (it must raise)."""
    with pytest.raises((ValueError, TypeError)) as caught:
        fn(*args, **kwargs)
    return caught.type, str(caught.value)


def raises_same(expected, fn, *args, **kwargs):
    kind, message = expected
    with pytest.raises(kind, match=f"^{re.escape(message)}$"):
        fn(*args, **kwargs)


# ------------------------------------------------------------------ the operators
@OPS
@pytest.mark.parametrize("fault", FAULTS)
def test_each_operator_refuses_each_bad_value_with_the_eager_message(fault):
    labels, labels_len, logits, logits_len = with_fault(fault)
    expected = eager_error(S.ctc_loss, labels, labels_len, logits, logits_len)
    ops = torch.ops.seq_loss_util
    log_probs = logits.log_softmax(-1)
    raises_same(expected, ops.ctc_viterbi, log_probs, labels, labels_len, logits_len)
    raises_same(expected, ops.ctc_loss, labels, labels_len, logits, logits_len, True, False)
    # The backward with a state that fits the (good) shapes: only the fault is wrong.
    good = augmented_batch()
    _, log_p, alpha, counted, poisoned = S._OPS.ctc_loss(*good, True, False)
    raises_same(expected, ops.ctc_loss_backward, torch.ones(2), labels, labels_len, logits_len,
                log_p, alpha, counted, poisoned)


@OPS
def test_the_backward_operator_checks_its_state_against_the_inputs():
    labels, labels_len, logits, logits_len = augmented_batch()
    _, log_p, alpha, counted, poisoned = S._OPS.ctc_loss(labels, labels_len, logits,
                                                         logits_len, True, False)
    backward = torch.ops.seq_loss_util.ctc_loss_backward
    args = [torch.ones(2), labels, labels_len, logits_len, log_p, alpha, counted, poisoned]
    want = backward(*args)
    wider = labels.new_zeros(2, 7)
    wider[:, :5] = labels
    with pytest.raises(ValueError, match=r"alpha must be the forward's state, torch.float32 "
                                         r"of shape \(2, 6, 7\)"):
        backward(args[0], wider, *args[2:])  # the state is 5 wide: C would read past it
    for index, bad, message in [
            (5, alpha[:, :3], "alpha must be the forward's state"),
            (5, alpha.double(), "alpha must be the forward's state"),
            (0, torch.ones(3), r"grad_loss must have shape \(2,\)"),
            (6, counted.long(), "counted must be a bool tensor"),
            (7, poisoned[:1], r"poisoned must have shape \(2,\)"),
            (4, log_p.half(), "log_probs must be float32 or float64")]:
        broken = list(args)
        broken[index] = bad
        with pytest.raises((ValueError, TypeError), match=message):
            backward(*broken)
    # A strided view reads as its values, not as the memory under it.
    strided = log_p.transpose(1, 2).contiguous().transpose(1, 2)
    torch.testing.assert_close(backward(*args[:4], strided, *args[5:]), want)


@OPS
def test_the_viterbi_operator_reads_views_and_refuses_other_dtypes():
    labels, labels_len, logits, logits_len = augmented_batch()
    viterbi = torch.ops.seq_loss_util.ctc_viterbi
    log_probs = logits.log_softmax(-1)
    path, score = viterbi(log_probs, labels, labels_len, logits_len)
    # Expanded from one example: stride 0 over a storage a sixth of the size C assumed.
    one = log_probs[:1].expand(2, -1, -1)
    got = viterbi(one, labels[:1].expand(2, -1), labels_len[:1].expand(2), logits_len[:1]
                  .expand(2))
    assert torch.equal(got[0][1], path[0]) and got[1][1] == score[0]
    with pytest.raises(TypeError, match="log_probs must be float32 or float64"):
        viterbi(log_probs.half(), labels, labels_len, logits_len)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        viterbi(log_probs, labels.float(), labels_len, logits_len)


# ------------------------------------------------------------------ compiled functions
COMPILED_FAULTS = {
    "id past C": (torch.tensor([[1, 7]]), None, None),
    "logits_len past T": (torch.tensor([[1, 2]]), torch.tensor([4000]), None),
    "negative logits_len": (torch.tensor([[1, 2]]), torch.tensor([-1]), None),
    "labels_len past U": (torch.tensor([[1, 2]]), None, torch.tensor([5])),
    "the blank as a label": (torch.tensor([[1, 0]]), None, None),
}


@OPS
@pytest.mark.parametrize("name", ["forced_align", "alignment_targets"])
def test_compiled_alignment_checks_as_eager(name):
    """The fuzzer's case: ``torch.compile(forced_align)`` skipped the value checks and ran
    the Viterbi kernel on an id past C (a path holding class 7 for C = 3) and on
    ``logits_len`` 4000 for T = 2 (a heap overflow). Compiled, the checks now run (a
    graph break) and say what eager says."""
    import torch._dynamo

    function = getattr(S, name)
    compiled = torch.compile(function)
    logits = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(0))
    try:
        for labels, logits_len, labels_len in COMPILED_FAULTS.values():
            expected = eager_error(function, logits, labels, logits_len, labels_len)
            raises_same(expected, compiled, logits, labels, logits_len, labels_len)
        good = torch.tensor([[1, 2]])
        want = function(logits, good)
        got = compiled(logits, good)
        for a, b in zip(got if name == "forced_align" else [got],
                        want if name == "forced_align" else [want], strict=True):
            torch.testing.assert_close(a, b)
    finally:
        torch._dynamo.reset()


@OPS
def test_a_compiled_viterbi_operator_checks_at_run_time():
    import torch._dynamo

    labels, labels_len, logits, logits_len = with_fault("logits_len past T")
    expected = eager_error(S.ctc_loss, labels, labels_len, logits, logits_len)
    compiled = torch.compile(lambda *a: torch.ops.seq_loss_util.ctc_viterbi(*a),
                             fullgraph=True)
    try:
        raises_same(expected, compiled, logits.log_softmax(-1), labels, labels_len,
                    logits_len)
    finally:
        torch._dynamo.reset()


@OPS
def test_a_compiled_training_module_refuses_an_id_past_c():
    """Compiled, CtcLossModule leaves its value checks to the loss operator (no graph
    break in a training step): the id reaches it blank-augmented, and it is refused
    there, with the loss's message."""
    import torch._dynamo

    logits = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[1, 9], [2, -100]])
    compiled = torch.compile(S.CtcLossModule(), fullgraph=True)
    try:
        with pytest.raises(ValueError, match="labels holds id 9 at example 0, position 3, "
                                             "outside"):
            compiled(logits, labels)
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------------------ the loss's kernel
def test_the_loss_over_zero_frames_with_a_gradient(monkeypatch):
    """T = 0 with a gradient asked for: the C backward once called memset(NULL, 0, 0)
    (undefined behaviour, reported under `make sanitize`). Every example is empty."""
    use_backend(monkeypatch, "c-kernel")
    logits = torch.zeros(2, 0, 4, requires_grad=True)
    labels = torch.tensor([[0, 0, 0], [0, 0, 0]])
    loss = S.ctc_loss(labels, torch.tensor([1, 1]), logits, torch.tensor([0, 0]), exact=True)
    loss.sum().backward()
    assert loss.tolist() == [0.0, 0.0] and logits.grad.shape == (2, 0, 4)


@pytest.mark.parametrize("scale", [1.0, 1e4, 1e30])
def test_alignment_targets_on_float16_agree_with_float64(monkeypatch, scale):
    """Reported by the fuzzing run: float16 logits scaled by 1e30 before the cast (so
    +-inf), B=4, T=100, C=200, blank 199, a class at -inf, an example of zero frames;
    the C kernel and the PyTorch backend differed by 0.10. Not reproduced at this
    commit: both equal the float64 computation, which is what this holds them to."""
    need_c_kernel()
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(4, 100, 200, generator=g) * scale
    logits[:, :, 5] = -math.inf
    if scale == 1.0:  # finite logits, and some -inf entries besides the class
        logits[torch.rand(4, 100, 200, generator=g) < 0.05] = -math.inf
    logits = logits.half()
    labels = torch.randint(0, 199, (4, 10), generator=g)
    labels[labels == 5] = 6
    frames = torch.tensor([100, 60, 0, 100])
    results = {}
    for name in ("c-kernel", "pytorch"):
        use_backend(monkeypatch, name)
        with pytest.warns(UserWarning, match="cannot be aligned"):
            results[name] = S.alignment_targets(logits, labels, frames, blank=199)
    use_backend(monkeypatch, "pytorch")
    with pytest.warns(UserWarning, match="cannot be aligned"):
        reference = S.alignment_targets(logits.double(), labels, frames, blank=199)
    for got in results.values():
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), reference, rtol=0, atol=1e-4)
    assert not reference[2].any()  # the example of zero frames has no alignment


# ------------------------------------------------------------------ decoding
# The first beam past the bound first: where the bound were gone, it decodes (and fails
# the test) in a moment, where 2**64 would hang the kernel.
@pytest.mark.parametrize("value", [D.MAX_BEAM + 1, 0, -1, 2**31, 2**62, 2**64, 2**64 + 3])
def test_beam_sizes_past_what_the_kernel_holds_are_refused(value):
    """2**64 once wrapped to 0 in ctypes and hung the kernel; 2**64 + 3 ran with a beam
    of 3; 2**62 overflowed 2 K."""
    logits = torch.randn(1, 5, 4)
    message = rf"beam_size must be an integer in \[1, {D.MAX_BEAM}\], got {value}"
    with pytest.raises(ValueError, match=message):
        D.ctc_beam_search(logits, beam_size=value)
    with pytest.raises(ValueError, match=message):
        D.CtcBeamSearchDecoder(["-", "|", "a", "b"], beam_size=value)
    with pytest.raises(ValueError, match=r"nbest must be an integer in \[1, "):
        D.ctc_beam_search(logits, beam_size=4, nbest=value)


@pytest.mark.parametrize("option,value,message", [
    ("beam_threshold", -1.0, "beam_threshold is how far below the best a prefix may score"),
    ("beam_threshold", -1e-9, "must be >= 0"),
    ("token_min_logp", 0.5, "token_min_logp is a log-probability: it must be <= 0"),
    ("token_min_logp", math.nan, "must be a finite number or None"),
    ("beam_threshold", True, "must be a finite number or None"),
])
def test_options_that_would_empty_the_output_are_refused(option, value, message):
    """A negative beam_threshold kept no prefix (an empty list); a positive
    token_min_logp appended no token (an empty text for every input)."""
    logits = torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match=re.escape(message)):
        D.ctc_beam_search(logits, **{option: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        D.CtcBeamSearchDecoder(["-", "|", "a", "b"], **{option: value})


def test_the_edges_of_those_options_still_decode(monkeypatch):
    """beam_threshold 0 keeps the best prefix (and its ties), token_min_logp 0 appends
    only certain tokens: both searches still return the best hypothesis."""
    logits = torch.randn(2, 8, 5, generator=torch.Generator().manual_seed(4)) * 3
    plain = D.ctc_beam_search(logits, beam_size=4)
    for kwargs in ({"beam_threshold": 0.0}, {"beam_threshold": 0}):
        compiled, tensors = both_searches(
            monkeypatch, lambda kwargs=kwargs: D.ctc_beam_search(logits, beam_size=4, **kwargs))
        for got in (compiled, tensors):
            assert [h[0].tokens for h in got] == [h[0].tokens for h in plain]
    certain = torch.full((1, 3, 3), -math.inf)
    certain[0, :, 1] = 0.0  # class 1 at every frame, probability 1
    compiled, tensors = both_searches(
        monkeypatch, lambda: D.ctc_beam_search(certain, token_min_logp=0.0))
    assert compiled[0][0].tokens == tensors[0][0].tokens == [1]


@pytest.mark.parametrize("poison", ["nan", "+inf", "all -inf"])
def test_a_non_finite_frame_is_named_not_decoded(monkeypatch, poison):
    """The C kernel returned hypotheses with NaN scores cut short at the frame; the
    tensor search returned []. Neither said why. A diverged model is named, as the
    loss names it (NaN), with the example and the frame. Past an example's length the
    same values are padding, never read."""
    logits = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(2))
    if poison == "all -inf":
        logits[1, 3] = -math.inf
    else:
        logits[1, 3, 2] = math.nan if poison == "nan" else math.inf
    decoder = D.CtcBeamSearchDecoder(["-", "|", "a", "b"], beam_size=3)
    message = "logits of example 1 at frame 3 hold NaN or +inf, or only -inf"
    for kernel in ("1", "0"):
        monkeypatch.setenv("SEQ_LOSS_UTIL_KERNEL", kernel)
        with pytest.raises(ValueError, match=re.escape(message)):
            D.ctc_beam_search(logits)
        with pytest.raises(ValueError, match=re.escape(message)):
            decoder(logits)
        padded = decoder(logits, torch.tensor([6, 3]))  # frame 3 is padding now
        want = decoder(logits[:, :3].clone())[1][0]
        assert padded[1][0].tokens == want.tokens
        assert padded[1][0].score == pytest.approx(want.score, abs=1e-5)


def test_an_empty_batch_decodes_to_an_empty_list(monkeypatch):
    """The tensor search failed on a reshape of 0 elements."""
    logits = torch.zeros(0, 5, 4)
    decoder = D.CtcBeamSearchDecoder(["-", "|", "a", "b"], beam_size=3)
    compiled, tensors = both_searches(
        monkeypatch, lambda: (D.ctc_beam_search(logits), decoder(logits)))
    assert compiled == tensors == ([], [])


def test_a_negative_hotword_weight_with_a_word_score(monkeypatch):
    """The fuzzer's case: the C kernel bounded a word end's gain by word_score +
    hotword_weight * phrase length, below word_score when the hotword weight is
    negative (a word that is no hotword gains word_score), so its early stop cut
    extensions the tensor search kept: 'a a' 0.5909 against 'b a' -0.258."""
    decoder = D.CtcBeamSearchDecoder(["<pad>", "|", "a", "b"], hotwords=["ab"],
                                     hotword_weight=-1.0, word_score=2.0, beam_size=2)
    logits = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(21)) * 2
    compiled, tensors = both_searches(monkeypatch, lambda: decoder(logits)[0][0])
    assert compiled.text == tensors.text == "b a"
    assert compiled.score == pytest.approx(tensors.score, abs=1e-5)
    assert compiled.score == pytest.approx(-0.25795, abs=1e-4)


# Positive backoffs are legal ARPA (KenLM takes them): after "a", any word that backs
# off gains 0.8 in log10, so p(b | a) reads as 10**(0.8 - 0.3) > 1.
POSITIVE_BACKOFF_ARPA = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-0.7\t</s>
-99\t<s>\t-0.2
-1.5\t<unk>
-0.4\ta\t0.8
-0.3\tb\t0.3

\\2-grams:
-0.5\t<s> a
-0.9\ta a
-0.2\tb </s>

\\end\\
"""


def test_positive_backoffs_do_not_cut_the_kernels_search(monkeypatch, tmp_path):
    """A word's LM score can exceed 0 where backoffs are positive: the C kernel's bound
    on a word end's gain takes the model's largest possible score (``max_log_prob``), so
    both searches keep the same prefixes at small beams."""
    path = tmp_path / "lift.arpa"
    path.write_text(POSITIVE_BACKOFF_ARPA)
    lm = NgramLM(path)
    assert lm.score_sentence(["a", "b"]) > lm.score_sentence(["a"])  # b adds a gain
    # The largest probability (b </s>, -0.2) plus the largest backoff (a, 0.8).
    assert lm.max_log_prob() == pytest.approx((-0.2 + 0.8) * math.log(10))
    tokens = ["-", "|", "a", "b"]
    differ = 0
    for seed in range(40):
        logits = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(seed)) * 2
        for beam in (1, 2, 3):
            decoder = D.CtcBeamSearchDecoder(tokens, lm=lm, lm_weight=2.0, word_score=-0.5,
                                             beam_size=beam, nbest=beam)
            compiled, tensors = both_searches(monkeypatch, lambda d=decoder, x=logits: d(x))
            for got, want in zip(compiled, tensors, strict=True):
                assert [h.text for h in got] == [h.text for h in want], (seed, beam)
                np.testing.assert_allclose([h.score for h in got], [h.score for h in want],
                                           rtol=1e-5, atol=1e-4)
            differ += compiled[0][0].text != D.CtcBeamSearchDecoder(
                tokens, beam_size=beam)(logits)[0][0].text
    assert differ  # the model changes some results: the inputs reach the bound
