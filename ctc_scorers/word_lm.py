"""A word n-gram language model as a prefix scorer: ``weight`` times ln p of each word
given the words before it, and of ``</s>`` at the end (Hypothesis.lm_score)."""
from __future__ import annotations

import torch

from ngram_lm import NgramLM

from .base import State, WordEvent, WordScorer, lm_tables


class WordLMScorer(WordScorer):
    """Its state is the LM context (the ids of the last ``order - 1`` words) and the
    ln p summed so far; its tables live on ``device``."""

    field = "lm_score"

    def __init__(self, lm: NgramLM, weight: float, device):
        self.lm, self.weight = lm.to(device), float(weight)

    def start(self, batch, beam, device, dtype) -> State:
        state = super().start(batch, beam, device, dtype)
        state["context"] = self.lm.start(batch * beam).reshape(batch, beam, self.lm.order - 1)
        return state

    def _score(self, state: State, ids: torch.Tensor) -> tuple[torch.Tensor, State]:
        shape, depth = state["total"].shape, self.lm.order - 1  # depth 0: a unigram model
        lp, context = self.lm.score(state["context"].reshape(shape.numel(), depth),
                                    ids.reshape(-1))
        lp = lp.reshape(shape).to(state["total"].dtype)
        return self.weight * lp, {"context": context.reshape(*shape, depth),
                                  "total": state["total"] + lp}

    def close(self, state, word: WordEvent):
        return self._score(state, self.lm.lookup(word.hash.reshape(-1)))

    def end(self, state):
        return self._score(state, torch.full(state["total"].shape, self.lm.eos,
                                             dtype=torch.long, device=state["total"].device))

    def weighted(self, state):
        return self.weight * state["total"]

    def kernel_fields(self, words) -> dict:
        return dict(lm=lm_tables(self.lm), lm_weight=self.weight,
                    lm_max=self.lm.max_log_prob())
