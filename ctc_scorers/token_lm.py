"""A token-level n-gram model as a prefix scorer: ``weight`` times ln p of every token
a prefix appends given the tokens before it, and of ``</s>`` at the end
(Hypothesis.token_lm_score). Its words are the decoder's tokens (characters or
SentencePiece pieces)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ngram_lm import NgramLM

from .base import State, TokenScorer, lm_tables


class TokenLMScorer(TokenScorer):
    """Its state is the model's context (the ids of the last ``order - 1`` tokens) and
    the ln p summed so far; each class id maps to the model's id of its token
    (``<unk>``'s for a token it lacks)."""

    field = "token_lm_score"

    def __init__(self, lm: NgramLM, tokens: Sequence[str], weight: float, device):
        self.lm, self.weight = lm.to(device), float(weight)
        self.ids = torch.tensor([lm.vocab.get(t, lm.unk) for t in tokens], dtype=torch.long,
                                device=device)

    def start(self, batch, beam, device, dtype) -> State:
        state = super().start(batch, beam, device, dtype)
        state["context"] = self.lm.start(batch * beam).reshape(batch, beam, self.lm.order - 1)
        return state

    def _lp(self, context: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """ln p (float64) of model ids ``ids`` (any shape S) after ``context`` (*S, n)."""
        lp, _ = self.lm.score(context.reshape(ids.numel(), self.lm.order - 1), ids.reshape(-1))
        return lp.reshape(ids.shape)

    def step(self, state, tokens):
        batch, beam = state["total"].shape
        width, depth = tokens.shape[1], state["context"].shape[-1]
        context = state["context"][:, :, None, :].expand(batch, beam, width, depth)
        ids = self.ids[tokens][:, None, :].expand(batch, beam, width)
        return (self.weight * self._lp(context, ids)).to(state["total"].dtype)

    def append(self, state, token):
        ids = self.ids[token.clamp(min=0)]
        lp = self._lp(state["context"], ids).to(state["total"].dtype)
        context = state["context"]
        if self.lm.order > 1:
            context = torch.cat([context[..., 1:], ids[..., None]], -1)
        return {"context": context, "total": state["total"] + lp}

    def end(self, state):
        eos = torch.full(state["total"].shape, self.lm.eos, dtype=torch.long,
                         device=state["total"].device)
        lp = self._lp(state["context"], eos).to(state["total"].dtype)
        return self.weight * lp, {"context": state["context"], "total": state["total"] + lp}

    def weighted(self, state):
        return self.weight * state["total"]

    def kernel_fields(self, words) -> dict:
        return dict(token_lm=lm_tables(self.lm), tlm_weight=self.weight,
                    tlm_max=self.lm.max_log_prob(), tlm_ids=self.ids.cpu().contiguous())
