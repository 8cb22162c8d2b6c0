"""torchaudio's aligner API, batched: ``forced_align`` and ``merge_tokens`` with the
signatures, shapes and semantics torchaudio documents
(``torchaudio.functional.forced_align`` / ``merge_tokens`` / ``TokenSpan``), for code
leaving torchaudio (in maintenance mode; its aligner runs one utterance at a time).

* :func:`forced_align` ``(log_probs (B, T, C), targets (B, L), input_lengths=None,
  target_lengths=None, blank=0)`` -> ``(alignments (B, T), scores (B, T))``: the Viterbi
  path's label at every frame and that frame's log-probability. Any batch size (torchaudio
  takes 1). ``log_probs`` are used as given, not normalised again (MMS appends a
  ``<star>`` column of zeros to them, and that is kept as is).
* :func:`merge_tokens` ``(tokens (T,), scores (T,), blank=0)`` -> ``[TokenSpan(token,
  start, end, score), ...]``: runs of one token, blanks dropped, ``score`` the mean of
  its frames' scores. A 2-D batch gives one list per row.

The path is :func:`seq_loss_util.forced_align`'s (same backends, same ties); the spans are
:func:`seq_loss_util.alignment_segments`' (tested on every example of a batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import seq_loss_util as S

__all__ = ["forced_align", "merge_tokens", "TokenSpan"]


@dataclass
class TokenSpan:
    """A token with its frames ``start <= t < end`` and its score (torchaudio's)."""

    token: int
    start: int
    end: int
    score: float

    def __len__(self) -> int:
        return self.end - self.start


def forced_align(log_probs: torch.Tensor, targets: torch.Tensor,
                 input_lengths: torch.Tensor | None = None,
                 target_lengths: torch.Tensor | None = None,
                 blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable CTC alignment of each example, as torchaudio returns it.

    Args:
      log_probs: ``(B, T, C)`` log-probabilities, used as they are.
      targets: ``(B, L)`` class ids (no blank), int32 or int64.
      input_lengths: ``(B,)`` valid frames (None: all ``T``).
      target_lengths: ``(B,)`` target lengths (None: all ``L``, as torchaudio reads them;
        negative padding is not read as padding here).
      blank: the blank's class id.

    Returns:
      ``(alignments, scores)``, both ``(B, T)``: the label at each frame (the blank in
      blank frames; int64) and ``log_probs`` of it there. Frames past an example's
      length hold the blank and score 0, so each row feeds :func:`merge_tokens` as is.

    Raises ``ValueError`` for an example with fewer frames than its labels and their
    adjacent repeats need (torchaudio's documented condition), naming it, and for the
    checks :func:`seq_loss_util.forced_align` makes.
    """
    if not torch.is_tensor(log_probs) or log_probs.dim() != 3:
        raise ValueError("log_probs must be a tensor (B, T, C)")
    if not torch.is_tensor(targets) or targets.dim() != 2:
        raise ValueError("targets must be a tensor (B, L)")
    batch, frames, _ = log_probs.shape
    if target_lengths is None:  # torchaudio reads every column as a label
        target_lengths = torch.full((batch,), targets.shape[1], dtype=torch.long,
                                    device=log_probs.device)
    with torch.no_grad():
        aug, aug_len, log_probs, lengths, labels_len = S._prepare_batch_first(
            log_probs, targets, input_lengths, target_lengths, blank, False)
        compute = S._compute_dtype(log_probs.dtype)
        lp = log_probs.to(compute).contiguous()
        width = int(aug_len.max()) if batch else 0
        path, score = S._select_backend(lp.device, compute, width).viterbi(
            lp, aug[:, :width].contiguous(), aug_len.long().contiguous(),
            lengths.long().contiguous())
        missing = ~torch.isfinite(score)
        if bool(missing.any()):
            b = int(missing.nonzero()[0])
            raise ValueError(S._infeasible_message(labels_len, lengths, aug[:, 1::2], b,
                                                   hint=""))
        labels = torch.where(path >= 0, aug.gather(1, path.clamp(min=0)), blank)
        scores = torch.where(path >= 0, lp.gather(2, labels[:, :, None])[:, :, 0], 0.0)
    return labels[:, :frames], scores.to(log_probs.dtype)


def merge_tokens(tokens: torch.Tensor, scores: torch.Tensor, blank: int = 0) -> list:
    """torchaudio's ``merge_tokens``: the runs of one token in an alignment's labels,
    blanks dropped, each with the mean of its frames' ``scores``. ``tokens`` and
    ``scores`` are ``(T,)``; ``(B, T)`` gives one list per row."""
    if not torch.is_tensor(tokens) or not torch.is_tensor(scores):
        raise TypeError("tokens and scores must be tensors")
    if tokens.shape != scores.shape or tokens.dim() not in (1, 2):
        raise ValueError(f"tokens and scores must have one shape, (T,) or (B, T); got "
                         f"{tuple(tokens.shape)} and {tuple(scores.shape)}")
    if tokens.dim() == 2:
        return [merge_tokens(t, s, blank) for t, s in zip(tokens, scores, strict=True)]
    tokens = tokens.long()
    if not tokens.numel():
        return []
    begin, end = S._runs(tokens)  # the blanks' runs are dropped after
    sums = torch.cat([torch.zeros(1, dtype=torch.float64, device=scores.device),
                      scores.double().cumsum(0)])
    means = (sums[end] - sums[begin]) / (end - begin)
    keep = tokens[begin] != blank
    return [TokenSpan(int(t), int(a), int(z), float(m)) for t, a, z, m in
            zip(tokens[begin][keep].tolist(), begin[keep].tolist(), end[keep].tolist(),
                means[keep].tolist(), strict=True)]
