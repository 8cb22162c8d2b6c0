"""Hotwords as a prefix scorer: ``weight`` each time a prefix completes one of the
given words or phrases (space-separated words, matched whole)."""
from __future__ import annotations

import torch

import ngram_lm

from .base import WordEvent, WordScorer, member, mix


class HotwordScorer(WordScorer):
    """A phrase of n words is known by the hash (:func:`base.mix`) of its length and
    its words' hashes; a completed word matches every phrase that ends with it and whose
    earlier words are the prefix's last ones. Its state is the bonus so far."""

    def __init__(self, hotwords, weight: float, device):
        phrases = [h.split() for h in hotwords if h.split()]
        self.weight = float(weight)
        self.phrase_len = max((len(p) for p in phrases), default=0)
        self.context_words = max(self.phrase_len - 1, 0)  # earlier words a phrase spans
        self.phrases = torch.tensor(sorted({int(self.phrase_hash(p)) for p in phrases}),
                                    dtype=torch.long, device=device)

    @staticmethod
    def phrase_hash(words) -> torch.Tensor:
        """The key of a phrase (a list of words), by the search's own mixing."""
        h = torch.tensor(len(words))
        for word in words:
            h = mix(h, torch.tensor(ngram_lm.string_hash(word)))
        return h

    def close(self, state, word: WordEvent):
        count = torch.zeros_like(state["total"])
        recent = word.recent  # (B, K, n), most recent last
        n = recent.shape[-1] if recent is not None else 0
        for length in range(1, self.phrase_len + 1):
            h = torch.full_like(word.hash, length)
            ok = torch.ones_like(word.hash, dtype=torch.bool)
            for j in range(length - 1):
                earlier = recent[..., n - (length - 1) + j]  # type: ignore[index]
                ok = ok & (earlier != 0)
                h = mix(h, earlier)
            h = mix(h, word.hash)
            count = count + (ok & member(self.phrases, h)).to(count.dtype)
        bonus = count * self.weight
        return bonus, {"total": state["total"] + bonus}

    def kernel_fields(self, words) -> dict:
        return dict(hotword_weight=self.weight, phrases=self.phrases,
                    phrase_len=self.phrase_len)
