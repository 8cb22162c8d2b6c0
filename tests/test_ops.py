"""The torch.library operators: opcheck on each, a training step under
torch.compile(fullgraph=True) with no graph break and eager's numbers, and the module
copied alone (no operators, no kernels) still passing the original's unit tests."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import seq_loss_util as S
from optional_deps import use_backend

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(S._OPS is None, reason="torch.library.custom_op needs torch>=2.4")


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 20, 6, generator=g)
    raw = torch.tensor([[1, 2, 2, 3], [4, 5, 0, 0], [1, 3, 5, 0]])
    aug = S.to_blank_augmented_labels({"SEQ_DATA": raw, "SEQ_LEN": torch.tensor([4, 2, 3])},
                                      0, True, False)
    return aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.tensor([20, 15, 9])


@pytest.mark.parametrize("backend", ["c-kernel", "triton"])
@pytest.mark.parametrize("exact,keep_beta", [(False, False), (True, False), (True, True)])
def test_opcheck_loss_and_backward(monkeypatch, backend, exact, keep_beta):
    # keep_beta on Triton: the forward runs beta beside alpha, its state (2, B, T, L).
    use_backend(monkeypatch, backend)
    labels, labels_len, logits, logits_len = batch()
    args = (labels, labels_len, logits.requires_grad_(True), logits_len, exact, False,
            keep_beta)
    torch.library.opcheck(torch.ops.seq_loss_util.ctc_loss.default, args)
    _, *saved = S._OPS.ctc_loss(*args)
    backward_args = (torch.tensor([1.0, 0.5, 2.0]), labels, labels_len, logits_len,
                     *[t.detach() for t in saved])
    torch.library.opcheck(torch.ops.seq_loss_util.ctc_loss_backward.default, backward_args)


def test_opcheck_viterbi():
    labels, labels_len, logits, logits_len = batch()
    args = (logits.log_softmax(-1), labels.long(), labels_len.long(), logits_len)
    torch.library.opcheck(torch.ops.seq_loss_util.ctc_viterbi.default, args)


def test_compiled_training_step_has_no_graph_break_and_eager_numbers():
    import torch._dynamo

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 6)
    ctc = S.CtcLossModule()
    features = torch.randn(3, 20, 8)
    labels = torch.tensor([[1, 2, 2, 3], [4, 5, -100, -100], [1, 3, 5, -100]])
    lengths = torch.tensor([20, 15, 9])

    def loss_of(features, labels, lengths):
        return ctc(model(features), labels, lengths)

    def step(fn):
        model.zero_grad()
        loss = fn(features, labels, lengths)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager = step(loss_of)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = step(torch.compile(loss_of, fullgraph=True))  # raises on any graph break
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert not torch._dynamo.utils.counters["graph_break"]
    torch.testing.assert_close(compiled[0], eager[0], atol=1e-5, rtol=1e-6)
    for got, want in zip(compiled[1], eager[1], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_module_copied_alone_passes_the_original_unit_tests(tmp_path):
    copy = tmp_path / "seq_loss_util.py"
    shutil.copy(ROOT / "seq_loss_util.py", copy)
    runner = tmp_path / "run.py"
    runner.write_text(textwrap.dedent(f"""
        import sys, unittest
        # Nothing installed beside the copy: no kernels, no decoder.
        for name in ("_seq_loss_kernels", "ctc_decoder", "ngram_lm"):
            sys.modules[name] = None
        import seq_loss_util as S
        assert S.__file__ == {str(copy)!r}, S.__file__
        assert S._OPS is None and S.backend() == "pytorch"
        try:
            S.greedy_decode(None)
            raise SystemExit("greedy_decode ran without ctc_decoder.py")
        except ImportError as e:
            assert "decoding lives in ctc_decoder.py" in str(e), e
        names = {{}}
        exec("from seq_loss_util import *", names)  # what it lacks is not promised
        assert "ctc_loss" in names and "greedy_decode" not in names, sorted(names)
        sys.path.append({str(ROOT)!r})  # the tests and the recorded data only
        import seq_loss_util_test as T
        suite = unittest.TestLoader().loadTestsFromTestCase(T.OriginalUnitTests)
        result = unittest.TextTestRunner(verbosity=1).run(suite)
        sys.exit(0 if result.wasSuccessful() and result.testsRun >= 8 else 1)
    """))
    result = subprocess.run([sys.executable, str(runner)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "OK" in result.stderr
