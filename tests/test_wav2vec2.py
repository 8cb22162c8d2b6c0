"""CtcLossModule inside Hugging Face: equal to Wav2Vec2ForCTC's own CTC loss, gradients
included, and the Trainer example trains. Needs the optional 'hf' extra: skipped with
the reason when it is missing or too old (an error under CI, which installs it)."""
import importlib.util
import re
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


def test_trainer_example_learns_to_transcribe(example, capsys):
    """The example's own run, less the comparison with the built-in loss: its held-out
    greedy CER must reach the example's 15% bar (it reaches 0.4% in full)."""
    assert example.main(["--no-builtin"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    match = re.fullmatch(r"CER (\d+\.\d)%", lines[-1])
    assert match and float(match.group(1)) <= 15.0, lines[-3:]
    assert any(line.strip().startswith("seq_loss_util loss: 400 steps") for line in lines)
    # Greedy, beam and beam + a word LM from the training transcripts: the LM does not
    # make either error rate worse.
    rates = {}
    for line in lines:
        found = re.fullmatch(r"\s*(greedy|beam|beam \+ LM): CER (\d+\.\d)%, WER (\d+\.\d)%",
                             line)
        if found:
            rates[found.group(1)] = (float(found.group(2)), float(found.group(3)))
    assert set(rates) == {"greedy", "beam", "beam + LM"}, lines
    for other in ("greedy", "beam"):
        assert rates["beam + LM"][0] <= rates[other][0] and rates["beam + LM"][1] <= rates[other][1]


def test_character_error_rate_counts_edits(example, monkeypatch):
    """Known values: the CER helper reports edits per reference character."""
    from transformers import Wav2Vec2ForCTC

    dataset = example.SyntheticSpeech(2, seed=0)
    dataset.items = [{"input_values": dataset.items[0]["input_values"], "labels": [1, 2, 3]},
                     {"input_values": dataset.items[1]["input_values"], "labels": [4, 5]}]
    model = Wav2Vec2ForCTC(example.tiny_config())
    # 1 substitution in "abc", 1 deletion in "de": 2 edits over 5 reference characters.
    monkeypatch.setattr(example, "transcribe", lambda model, batch: ["abd", "d"])
    assert example.character_error_rate(model, dataset) == pytest.approx(2 / 5)
