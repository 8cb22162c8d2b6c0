"""Unknown words as a prefix scorer: a completed word outside the words the decoder
knows (its lexicon, else its LM's vocabulary, and the hotwords) costs ``unk_score``
plus ``partial_oov`` per ``PARTIAL_OOV_CHARS`` characters past the first
``PARTIAL_OOV_CHARS`` (Hypothesis.unk_score); an unfinished word that begins no known
word ranks ``partial_oov`` times ``max(1, n / PARTIAL_OOV_CHARS)`` lower (pyctcdecode's
rule). With ``unk_score=-inf`` only known words are decoded (flashlight's
``LexiconDecoder``)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

import ngram_lm

from .base import WordEvent, WordScorer, c_kernel, member

# An unfinished word that begins no known word is ranked partial_oov lower, times its
# length in characters over this (pyctcdecode's AVG_TOKEN_LEN), and a completed unknown
# word keeps the part past this many characters: with a flat penalty, ranking only, one
# held-out utterance grew a 57-letter word, each letter as cheap as the first.
PARTIAL_OOV_CHARS = 6


def unknown_word_cost(length: torch.Tensor, unk_score: float,
                      partial_oov: float) -> torch.Tensor:
    """What a completed unknown word of ``length`` characters costs (float64):
    ``unk_score``, and ``partial_oov`` per PARTIAL_OOV_CHARS characters past the first
    PARTIAL_OOV_CHARS (the C kernel's ``ucost``)."""
    excess = (length.double() / PARTIAL_OOV_CHARS - 1.0).clamp(min=0.0)
    return unk_score + partial_oov * excess


class UnknownWordScorer(WordScorer):
    """``known``: the words the decoder knows. Its tables (on ``device``): the sorted
    hashes of those words and of every prefix of them. Its state is the cost so far."""

    field = "unk_score"
    # Prefixes times non-boundary tokens that the C kernel's table of known
    # continuations may take to build (a million prefixes at 32 tokens, a few seconds
    # once per decoder); past it the kernel goes without (slower with an LM and no
    # pruning, same result).
    CHILD_TABLE_BUDGET = 1 << 25

    def __init__(self, known: Sequence[str], unk_score: float, partial_oov: float, device):
        self.unk_score, self.partial_oov = float(unk_score), float(partial_oov)
        self.forbidden = self.unk_score == -math.inf
        word_hashes, prefix_hashes = ngram_lm.prefix_hashes(list(known))
        self.prefixes = torch.from_numpy(np.unique(prefix_hashes)).to(device)
        self.words = torch.from_numpy(np.unique(word_hashes)).to(device)

    def start(self, batch, beam, device, dtype):
        # In float64 whatever the search's dtype, as the C kernel keeps it: reported as
        # Hypothesis.unk_score, where a float32 sum of -0.05s would drift.
        return {"total": torch.zeros(batch, beam, dtype=torch.float64, device=device)}

    def close(self, state, word: WordEvent):
        oov = ~member(self.words, word.hash)
        ucost = torch.where(oov, unknown_word_cost(word.length, self.unk_score,
                                                   self.partial_oov), 0.0)
        return ucost, {"total": state["total"] + ucost}

    def weighted(self, state):
        return state["total"]

    def partial(self, word: WordEvent) -> torch.Tensor | None:
        """The rank penalty of an unfinished word that begins no known word (float64).
        Once the word is complete, close() charges it instead: the same part past
        PARTIAL_OOV_CHARS, unk_score for the rest."""
        if not self.prefixes.numel():  # an LM of no words: nothing to steer towards
            return None
        unknown = (word.length > 0) & ~member(self.prefixes, word.hash)
        if self.forbidden:
            return torch.where(unknown, -math.inf, 0.0).double()
        scale = (word.length.double() / PARTIAL_OOV_CHARS).clamp(min=1.0)
        return torch.where(unknown, self.partial_oov * scale, 0.0)

    def children(self, words) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The C kernel's table of known continuations (CPU), by the search's word
        tables ``words``: for each known prefix hash (and 0, the empty prefix), the
        tokens that continue the unfinished word into a prefix that is still known, by
        the kernel's own rule (the prefix hash grown by the token's characters is a
        known prefix, or the token adds none). Returns sorted ``keys``, ``start``
        offsets (one more than the keys) and the ``tokens``; all empty where the table
        would be too big. With it, the kernel bounds a word-continuing extension of a
        known prefix by the unknown-prefix penalty unless the token is listed: at beam
        100 with an LM, about 240 of the 280 extensions a frame tried were such words."""
        empty = torch.zeros(0, dtype=torch.long)
        prefixes = self.prefixes.cpu()
        inner = (~words.boundary.cpu()).nonzero().flatten()
        keys = torch.cat([torch.zeros(1, dtype=torch.long), prefixes]).unique()
        if (not prefixes.numel() or not inner.numel()
                or keys.numel() * inner.numel() > self.CHILD_TABLE_BUDGET):
            return empty, torch.zeros(1, dtype=torch.long), empty
        power, part = words.char_power.cpu()[inner], words.char_hash.cpu()[inner]
        length = words.char_len.cpu()[inner]
        kernel = c_kernel()
        if kernel is not None:  # the kernel's own hash set: 0.2 s where isin took 4
            known = kernel.beam_children(prefixes.contiguous(), keys, power.contiguous(),
                                         part.contiguous(), length.contiguous())
        else:
            step = max(1, (1 << 20) // inner.numel())  # keys per chunk: about 8 MB at a time
            # The grown hashes wrap around in int64, as the kernel's do.
            known = torch.cat([torch.isin(keys[a:a + step, None] * power + part, prefixes)
                               | (length == 0) for a in range(0, keys.numel(), step)])
        rows, cols = known.nonzero(as_tuple=True)  # row-major: grouped by key
        start = torch.zeros(keys.numel() + 1, dtype=torch.long)
        start[1:] = torch.bincount(rows, minlength=keys.numel()).cumsum(0)
        return keys, start, inner[cols].contiguous()

    def kernel_fields(self, words) -> dict:
        return dict(partial_oov=self.partial_oov, unk_score=self.unk_score,
                    partial_chars=float(PARTIAL_OOV_CHARS), prefixes=self.prefixes,
                    words=self.words, children=self.children(words))
