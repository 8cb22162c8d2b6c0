"""CtcLossModule inside Hugging Face: equal to Wav2Vec2ForCTC's own CTC loss, gradients
included, and the Trainer example trains. Needs the optional 'hf' extra: skipped with
the reason when it is missing or too old (an error under CI, which installs it)."""
import importlib.util
from pathlib import Path

import pytest
import torch

from optional_deps import HF, require

require(HF, "hf")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wav2vec2_trainer.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("wav2vec2_trainer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equals_the_models_builtin_loss(example):
    import seq_loss_util as S
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(example.tiny_config())
    assert model.config.ctc_loss_reduction == "mean"
    batch = example.collate([example.SyntheticSpeech(6, seed=3)[i] for i in range(6)])
    outputs = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"])
    ours = S.CtcLossModule(blank=model.config.pad_token_id, reduction="mean")(
        outputs.logits, batch["labels"], example.frame_lengths(model, batch["attention_mask"]))
    torch.testing.assert_close(ours, outputs.loss, atol=1e-5, rtol=0)

    params = [p for p in model.parameters() if p.requires_grad]
    want = torch.autograd.grad(outputs.loss, params, retain_graph=True)
    got = torch.autograd.grad(ours, params)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, g, w in zip(names, got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_trainer_example_loss_falls(example, capsys):
    assert example.main(["--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "loss" in out and "->" in out
