"""Fine-tune wav2vec2 with the Hugging Face Trainer, using seq_loss_util's CTC loss,
until it transcribes.

    python examples/wav2vec2_trainer.py [--steps 400] [--seed 0] [--no-builtin]

Runs offline on a CPU. The model is a tiny Wav2Vec2ForCTC built from a config and
randomly initialised (no hub download). The data are synthetic "speech": each
character of a tiny vocabulary is a tone of its own pitch, with short silences. The
Trainer subclass below overrides ``compute_loss`` to use ``CtcLossModule`` instead of
the model's built-in loss; the same seed is then trained with the built-in loss for
comparison (``--no-builtin`` skips that). Success is what a user cares about: the
character error rate (CER, from jiwer) on held-out utterances. Each utterance says one
word of a small lexicon, so the held-out set is also decoded with ``ctc_decoder``'s
prefix beam search, alone and with a word language model estimated from the training
transcripts (``ngram_lm.write_arpa``), and CER and word error rate (WER) are printed
for greedy, beam and beam + LM. The last line is ``CER x.x%`` (greedy) for
seq_loss_util's run, and the script exits 1 above 15%.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import Trainer, TrainingArguments, Wav2Vec2Config, Wav2Vec2ForCTC

import seq_loss_util as S
from ngram_lm import write_arpa

# <pad> doubles as the CTC blank, as in HF; "|" is the word delimiter that wav2vec2
# vocabularies carry (one word per utterance here, so it is never said).
VOCAB = ["<pad>", "a", "b", "c", "d", "e", "|"]
LETTERS = 5  # a to e: each a tone of its own pitch
SAMPLE_RATE = 16_000


def lexicon(seed: int = 1234, size: int = 40) -> list:
    """The words utterances say: ``size`` distinct random spellings of 2 to 5 letters."""
    rng = np.random.default_rng(seed)
    words = set()
    while len(words) < size:
        words.add(tuple(int(c) for c in rng.integers(1, LETTERS + 1, rng.integers(2, 6))))
    return sorted(words)


def tiny_config() -> Wav2Vec2Config:
    """A few-thousand-parameter wav2vec2 with no dropout or masking (deterministic)."""
    return Wav2Vec2Config(
        vocab_size=len(VOCAB), pad_token_id=0, ctc_loss_reduction="mean",
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
        num_feat_extract_layers=3, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
        mask_feature_prob=0.0)


def synthetic_utterance(rng: np.random.Generator) -> dict:
    """A word of the lexicon (2 to 5 characters), each character a 40-70 ms tone, with
    silences."""
    words = lexicon()
    text = np.array(words[int(rng.integers(0, len(words)))])
    pieces = [np.zeros(int(rng.integers(80, 400)), np.float32)]
    for char in text:
        n = int(rng.integers(640, 1120))
        t = np.arange(n) / SAMPLE_RATE
        pieces.append(0.6 * np.sin(2 * np.pi * 300 * char * t).astype(np.float32))
        pieces.append(np.zeros(int(rng.integers(160, 480)), np.float32))
    audio = np.concatenate(pieces)
    audio += 0.02 * rng.standard_normal(audio.shape).astype(np.float32)
    return {"input_values": audio, "labels": text.tolist()}


class SyntheticSpeech(torch.utils.data.Dataset):
    def __init__(self, size: int, seed: int):
        rng = np.random.default_rng(seed)
        self.items = [synthetic_utterance(rng) for _ in range(size)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(features: list) -> dict:
    """Pads audio with zeros (and an attention mask) and labels with -100, as HF does."""
    longest = max(len(f["input_values"]) for f in features)
    width = max(len(f["labels"]) for f in features)
    audio = torch.zeros(len(features), longest)
    mask = torch.zeros(len(features), longest, dtype=torch.long)
    labels = torch.full((len(features), width), -100, dtype=torch.long)
    for b, f in enumerate(features):
        audio[b, : len(f["input_values"])] = torch.from_numpy(f["input_values"])
        mask[b, : len(f["input_values"])] = 1
        labels[b, : len(f["labels"])] = torch.tensor(f["labels"])
    return {"input_values": audio, "attention_mask": mask, "labels": labels}


def frame_lengths(model: Wav2Vec2ForCTC, attention_mask: torch.Tensor | None):
    """Valid logit frames per example, from the audio's attention mask (None: all)."""
    if attention_mask is None:
        return None
    model = getattr(model, "module", model)  # under DDP the Trainer passes the wrapper
    return model._get_feat_extract_output_lengths(attention_mask.sum(-1)).long()


class CtcTrainer(Trainer):
    """A Trainer whose loss is seq_loss_util.CtcLossModule, configured like the model's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.model.config
        self.ctc = S.CtcLossModule(blank=config.pad_token_id,
                                   reduction=config.ctc_loss_reduction,
                                   zero_infinity=config.ctc_zero_infinity)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.ctc(outputs.logits, labels, frame_lengths(model, inputs.get("attention_mask")))
        return (loss, outputs) if return_outputs else loss


def spell(ids) -> str:
    return "".join(VOCAB[i] for i in ids)


def logits_of(model: Wav2Vec2ForCTC, batch: dict):
    """The model's logits (B, T, C) and their valid frame counts."""
    model.eval()
    with torch.no_grad():
        logits = model(input_values=batch["input_values"],
                       attention_mask=batch["attention_mask"]).logits
    model.train()
    return logits, frame_lengths(model, batch["attention_mask"])


def transcribe(model: Wav2Vec2ForCTC, batch: dict, decoder=None) -> list:
    """Transcripts of a collated batch, as strings: greedy (best path), or the best
    hypothesis of ``decoder`` (a ctc_decoder.CtcBeamSearchDecoder)."""
    logits, lengths = logits_of(model, batch)
    if decoder is not None:
        return [hyps[0].text if hyps else "" for hyps in decoder(logits, lengths)]
    decoded = S.greedy_decode(logits, lengths, blank=model.config.pad_token_id)
    return [spell(row[row >= 0].tolist()) for row in decoded]


def character_error_rate(model: Wav2Vec2ForCTC, dataset: SyntheticSpeech) -> float:
    """Greedy CER over ``dataset`` (edit distance per reference character, by jiwer)."""
    import jiwer

    batch = collate([dataset[i] for i in range(len(dataset))])
    references = [spell(item["labels"]) for item in dataset.items]
    return jiwer.cer(references, transcribe(model, batch))


def decoding_error_rates(model: Wav2Vec2ForCTC, dataset: SyntheticSpeech,
                         train_set: SyntheticSpeech, workdir: str) -> dict:
    """{"greedy" | "beam" | "beam + LM": (CER, WER)} over ``dataset``; the LM is a
    word bigram estimated from ``train_set``'s transcripts."""
    import jiwer

    batch = collate([dataset[i] for i in range(len(dataset))])
    references = [spell(item["labels"]) for item in dataset.items]
    arpa = write_arpa([[spell(item["labels"])] for item in train_set.items],
                      f"{workdir}/transcripts.arpa", order=2)
    decoders = {
        "greedy": None,
        "beam": S.CtcBeamSearchDecoder(VOCAB, blank=model.config.pad_token_id, beam_size=16),
        "beam + LM": S.CtcBeamSearchDecoder(VOCAB, blank=model.config.pad_token_id,
                                            beam_size=16, lm=arpa, lm_weight=1.0)}
    rates = {}
    for name, decoder in decoders.items():
        hypotheses = transcribe(model, batch, decoder)
        rates[name] = (jiwer.cer(references, hypotheses), jiwer.wer(references, hypotheses))
    return rates


def train(trainer_class, args, train_set: SyntheticSpeech) -> tuple:
    """Trains a fresh model (seeded) with ``trainer_class``; returns it and its losses."""
    torch.manual_seed(args.seed)
    model = Wav2Vec2ForCTC(tiny_config())
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=8,
            learning_rate=3e-3, warmup_steps=50, logging_steps=50, save_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True, seed=args.seed,
            remove_unused_columns=False, dataloader_num_workers=0)
        trainer = trainer_class(model=model, args=training, data_collator=collate,
                                train_dataset=train_set)
        trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return model, losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-builtin", action="store_true",
                        help="skip the comparison run with the model's built-in loss")
    args = parser.parse_args(argv)

    train_set = SyntheticSpeech(512, args.seed)
    held_out = SyntheticSpeech(64, args.seed + 10_000)  # utterances never trained on
    runs = [("seq_loss_util", CtcTrainer)] + ([] if args.no_builtin else [("built-in", Trainer)])
    error_rates = {}
    for name, trainer_class in runs:
        started = time.perf_counter()
        model, losses = train(trainer_class, args, train_set)
        error_rates[name] = character_error_rate(model, held_out)
        print(f"{name:>13} loss: {args.steps} steps in {time.perf_counter() - started:.1f} s; "
              f"training loss {losses[0]:.3f} -> {losses[-1]:.3f}; held-out greedy CER "
              f"{100 * error_rates[name]:.1f}%", flush=True)
        if name == "seq_loss_util":
            with tempfile.TemporaryDirectory() as workdir:
                rates = decoding_error_rates(model, held_out, train_set, workdir)
            for decoding, (cer, wer) in rates.items():
                print(f"{'':>13} {decoding:>9}: CER {100 * cer:.1f}%, WER {100 * wer:.1f}%")
    print(f"CER {100 * error_rates['seq_loss_util']:.1f}%")
    return 0 if error_rates["seq_loss_util"] <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
