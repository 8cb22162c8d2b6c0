"""A fixed score per completed word (``word_score``: a length bonus, or a penalty where
negative), as pyctcdecode's ``beta`` and flashlight's ``word_score``."""
from __future__ import annotations

import torch

from .base import State, WordEvent, WordScorer


class WordBonusScorer(WordScorer):
    """Its state counts the words (in the scores' dtype: exact to 2**24 words)."""

    def __init__(self, word_score: float):
        self.weight = float(word_score)

    def start(self, batch, beam, device, dtype) -> State:
        return {"count": torch.zeros(batch, beam, dtype=dtype, device=device)}

    def close(self, state, word: WordEvent):
        return torch.full_like(state["count"], self.weight), {"count": state["count"] + 1}

    def weighted(self, state):
        return self.weight * state["count"]

    def total(self, state):
        return state["count"]

    def kernel_fields(self, words) -> dict:
        return dict(word_score=self.weight)
