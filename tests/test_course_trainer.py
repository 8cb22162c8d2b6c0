"""The course's own Trainer override, as the guide (docs/training.md) shows it, trains
with this loss.

The guide's MyTrainer is the course's literal ``compute_loss(self, model, inputs,
return_outputs=False)`` with one change, the ``num_items_in_batch`` parameter, and it
copes with a feature extractor that returns no attention mask (wav2vec2-base's).
Needs the 'hf' extra; skipped with the reason without it (an error under CI).
"""
import importlib.util
import re
import tempfile
from pathlib import Path

import pytest
import torch

from optional_deps import HF, require

require(HF, "hf")

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "training.md"
BLOCK = next(b for b in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
             if "class MyTrainer(Trainer)" in b)
COURSE_SIGNATURE = "def compute_loss(self, model, inputs, return_outputs=False):"


def load_example():
    spec = importlib.util.spec_from_file_location("wav2vec2_trainer",
                                                  ROOT / "examples" / "wav2vec2_trainer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def my_trainer(block):
    namespace = {"__name__": "readme_my_trainer"}
    exec(compile(block, str(GUIDE), "exec"), namespace)
    return namespace["MyTrainer"]


def collate_without_mask(example):
    def collate(features):
        batch = example.collate(features)
        del batch["attention_mask"]  # as wav2vec2-base's feature extractor: no mask
        return batch
    return collate


def train(trainer_class, example, steps=2):
    from transformers import TrainingArguments, Wav2Vec2ForCTC

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(example.tiny_config())
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=4,
                                 learning_rate=1e-3, logging_steps=1, save_strategy="no",
                                 report_to="none", use_cpu=True, disable_tqdm=True,
                                 remove_unused_columns=False)
        trainer = trainer_class(model=model, args=args, data_collator=collate_without_mask(example),
                                train_dataset=example.SyntheticSpeech(8, seed=1))
        trainer.train()
    return trainer, model


def test_readme_trainer_is_the_course_signature_plus_one_parameter():
    assert COURSE_SIGNATURE.replace("):", ", num_items_in_batch=None):") in BLOCK


def test_readme_trainer_trains_without_an_attention_mask():
    example = load_example()
    trainer, model = train(my_trainer(BLOCK), example)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))

    # With no mask every frame counts, as in the model's built-in loss: they agree.
    batch = collate_without_mask(example)([example.SyntheticSpeech(4, seed=2)[i]
                                           for i in range(4)])
    builtin = model(**batch).loss
    ours = trainer.compute_loss(model, dict(batch))
    torch.testing.assert_close(ours, builtin, atol=1e-5, rtol=0)


def test_the_course_signature_alone_fails_as_the_readme_says():
    """Why the guide adds the parameter: transformers >= 4.46 passes it."""
    literal = BLOCK.replace(COURSE_SIGNATURE.replace("):", ", num_items_in_batch=None):"),
                            COURSE_SIGNATURE)
    with pytest.raises(TypeError, match="num_items_in_batch"):
        train(my_trainer(literal), load_example(), steps=1)
