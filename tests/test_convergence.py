"""Proof that it trains: a small model learns synthetic CTC data with CtcLossModule as
well as with torch.nn.CTCLoss from the same seed. Both label error rates are printed."""
import numpy as np
import torch

import seq_loss_util as S

CLASSES = 7  # blank 0 and six labels
FEATURES = CLASSES


def synthetic_batch(rng, batch, noise=0.25):
    """Frames are noisy one-hot codes of a random label sequence with random durations;
    blank (silence) frames separate labels, always between repeats."""
    utterances, labels = [], []
    for _ in range(batch):
        seq = rng.integers(1, CLASSES, rng.integers(2, 7))
        frames = [0] * int(rng.integers(0, 3))
        for i, label in enumerate(seq):
            if i and (label == seq[i - 1] or rng.random() < 0.5):
                frames += [0] * int(rng.integers(1, 3))
            frames += [int(label)] * int(rng.integers(2, 5))
        frames += [0] * int(rng.integers(0, 3))
        utterances.append(np.asarray(frames))
        labels.append(seq)
    frames_len = torch.tensor([len(u) for u in utterances])
    labels_len = torch.tensor([len(s) for s in labels])
    x = torch.zeros(batch, int(frames_len.max()), FEATURES)
    y = torch.full((batch, int(labels_len.max())), -100, dtype=torch.long)
    for b, (u, s) in enumerate(zip(utterances, labels, strict=True)):
        x[b, : len(u)] = torch.nn.functional.one_hot(torch.from_numpy(u), FEATURES).float()
        y[b, : len(s)] = torch.from_numpy(s)
    x = x + noise * torch.from_numpy(rng.standard_normal(x.shape)).float()
    return x, y, frames_len, labels_len


class ConvModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(FEATURES, 48, 5, padding=2), torch.nn.ReLU(),
            torch.nn.Conv1d(48, 48, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv1d(48, CLASSES, 1))

    def forward(self, x):  # (B, T, F) -> (B, T, C)
        return self.net(x.transpose(1, 2)).transpose(1, 2)


def greedy_decode(logits, frames_len):
    best = logits.argmax(-1)
    out = []
    for b in range(len(frames_len)):
        path = best[b, : frames_len[b]].tolist()
        out.append([c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])])
    return out


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def train_and_score(loss_name, steps=250, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ConvModel()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    ours = S.CtcLossModule(blank=0, reduction="mean")
    native = torch.nn.CTCLoss(blank=0, reduction="mean")
    for _ in range(steps):
        x, y, frames_len, labels_len = synthetic_batch(rng, 32)
        logits = model(x)
        if loss_name == "ours":
            loss = ours(logits, y, frames_len)
        else:
            loss = native(logits.log_softmax(-1).transpose(0, 1), y.clamp(min=0), frames_len,
                          labels_len)
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    x, y, frames_len, labels_len = synthetic_batch(np.random.default_rng(10_000), 300)
    with torch.no_grad():
        hyps = greedy_decode(model(x), frames_len)
    refs = [y[b, : labels_len[b]].tolist() for b in range(len(hyps))]
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / sum(map(len, refs))


def test_trains_as_well_as_torch_ctc_loss(capsys):
    ler_ours = train_and_score("ours")
    ler_native = train_and_score("native")
    with capsys.disabled():
        print(f"\nlabel error rate after training: CtcLossModule {ler_ours:.2%}, "
              f"torch.nn.CTCLoss {ler_native:.2%}")
    assert ler_ours < 0.05
    assert abs(ler_ours - ler_native) <= 0.02


if __name__ == "__main__":
    print(f"CtcLossModule {train_and_score('ours'):.2%}, "
          f"torch.nn.CTCLoss {train_and_score('native'):.2%}")
