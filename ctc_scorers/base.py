"""The interface of a prefix scorer: one part of a beam-search prefix's score that is
not acoustic (a word LM, a token LM, unknown words, hotwords, a word bonus).

Both of ctc_decoder's searches keep, for every prefix in the beam, the word it has not
finished (a hash of its characters) and, per scorer, a state: a dict of tensors whose
leading dimensions are ``(B, K)`` (batch, beam). They call a scorer at three events, as
pyctcdecode's ``AbstractLanguageModel`` and flashlight's ``LM`` are called:

* a :class:`WordScorer` when a prefix completes a word (at a delimiter, at the next
  word's start in SentencePiece mode, at the end of the utterance): :meth:`close`;
  and, for ranking only, on the unfinished word of every prefix: :meth:`partial`;
* a :class:`TokenScorer` when a prefix appends a token: :meth:`step` scores every
  candidate token for ranking, :meth:`append` moves the state of the chosen ones;
* both at the end of the utterance (after the last word is closed): :meth:`end`.

A scorer returns what it adds to the score (weight included; in any float dtype, the
search casts it to its own) and its next state; the
search picks, gathers and masks the states (the rows of prefixes that did not complete
a word, or did not append, keep theirs). :meth:`Scorer.weighted` is the part of a
prefix's score the scorer has added so far and :meth:`Scorer.total` what a hypothesis
reports for it (``field``, e.g. ``lm_score``). The tensor search runs any scorer; the C
kernel runs those that say how (:meth:`Scorer.kernel_fields`), and a search with one
that does not runs as tensor operations. A new scorer is a subclass in a file of its
own, and one line where ``CtcBeamSearchDecoder`` lists its scorers.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch

import ngram_lm

State = dict  # name -> tensor (B, K, ...)


def c_kernel():
    """The compiled C search (``_seq_loss_kernels``' CPU library), or None: not
    installed, switched off (``SEQ_LOSS_UTIL_KERNEL=0``), or no compiler (its loader
    warns why)."""
    if os.environ.get("SEQ_LOSS_UTIL_KERNEL", "1") == "0":
        return None
    try:
        from _seq_loss_kernels import cpu
    except ImportError:
        return None
    return cpu if cpu.backend() is not None else None


# ------------------------------------------------------------------ hashing
_signed = ngram_lm._signed  # a 64-bit pattern as the int64 that holds it

_M1 = _signed(0x9E3779B97F4A7C15)
_M2 = _signed(0xBF58476D1CE4E5B9)


def mix(h: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """A 64-bit hash of the sequence ``(..., item)`` from that of ``(...)``: int64
    arithmetic wraps, and the shifts are made logical by masking (splitmix64's
    finaliser), so the hash is not linear in the items. The search names prefixes by it,
    the hotwords their phrases (the C kernel's ``beam_mix`` is the same function)."""
    z = h * _M1 + item + 1
    z = z ^ ((z >> 31) & ((1 << 33) - 1))
    z = z * _M2
    return z ^ ((z >> 29) & ((1 << 35) - 1))


def member(table: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Whether each of ``keys`` is in the sorted 1-D ``table``."""
    if not table.numel():
        return torch.zeros_like(keys, dtype=torch.bool)
    at = torch.searchsorted(table, keys.reshape(-1)).clamp(max=table.numel() - 1)
    return (table[at] == keys.reshape(-1)).reshape(keys.shape)


def lm_tables(lm: ngram_lm.NgramLM | None) -> dict:
    """An n-gram model's tables as the C kernel's ``struct ctc_lm`` takes them (CPU
    tensors); order 0 for none."""
    empty = torch.zeros(1, dtype=torch.long)
    if lm is None:
        return dict(order=0, size=0, unk=0, bos=0, eos=0, unk_prob=0.0, keys=[], prob=[],
                    backoff=[], real=[], counts=empty, hash_keys=empty, hash_ids=empty)
    return dict(order=lm.order, size=lm._size, unk=lm.unk, bos=lm.bos, eos=lm.eos,
                unk_prob=float(lm._unk_prob()),
                keys=[t.cpu().contiguous() for t in lm._keys],
                prob=[t.cpu().contiguous() for t in lm._prob],
                backoff=[t.cpu().contiguous() for t in lm._backoff],
                real=[t.cpu().to(torch.uint8).contiguous() for t in lm._real],
                counts=torch.tensor([t.numel() for t in lm._keys], dtype=torch.long),
                hash_keys=lm._hash_keys.cpu().contiguous(),
                hash_ids=lm._hash_ids.cpu().contiguous())


# ------------------------------------------------------------------ the interface
class WordEvent(NamedTuple):
    """A word of every prefix ``(B, K)``, completed (:meth:`WordScorer.close`) or not
    (:meth:`WordScorer.partial`)."""
    hash: torch.Tensor  # (B, K, ...) int64: ngram_lm.string_hash of its characters
    length: torch.Tensor  # (B, K, ...) its characters; 0 where there is no word
    recent: torch.Tensor | None = None  # (B, K, n): the n words before it, latest last


class Scorer:
    """What every scorer has: a state, its part of the score, the end of the utterance.
    Subclass :class:`WordScorer` or :class:`TokenScorer`, not this."""

    field: str | None = None  # the Hypothesis field reporting total(); None: score only

    def start(self, batch: int, beam: int, device, dtype: torch.dtype) -> State:
        """The state of the empty prefix, for ``(batch, beam)`` prefixes; scores in
        ``dtype``."""
        return {"total": torch.zeros(batch, beam, dtype=dtype, device=device)}

    def weighted(self, state: State) -> torch.Tensor:
        """``(B, K)``: the part of each prefix's score added so far: the sum of what
        close/step-append/end returned for it (the search ranks by those at the event and
        by this afterwards, so the two must agree). By default the state's "total"."""
        return state["total"]

    def total(self, state: State) -> torch.Tensor:
        """``(B, K)``: what a hypothesis reports in ``field``."""
        return state["total"]

    def end(self, state: State) -> tuple[torch.Tensor, State]:
        """The score of ending the utterance here (after its last word has been
        closed), and the state after. Nothing by default."""
        return torch.zeros_like(self.weighted(state)), state

    def kernel_fields(self, words) -> dict | None:
        """The C kernel's fields for this scorer (``struct ctc_words``, through
        ``_seq_loss_kernels.cpu``), given the search's word tables ``words``; None where
        the kernel has no implementation of it (the default): the search then runs as
        tensor operations."""
        return None


class WordScorer(Scorer):
    """Scores words as prefixes complete them."""

    context_words = 0  # earlier words close() reads in WordEvent.recent

    def close(self, state: State, word: WordEvent) -> tuple[torch.Tensor, State]:
        """``(B, K)`` what completing ``word`` now adds to each prefix's score, and the
        state after. Rows where ``word.length`` is 0 (no word) are ignored."""
        raise NotImplementedError

    def partial(self, word: WordEvent) -> torch.Tensor | None:
        """A rank-only term for an unfinished word ``(B, K, ...)``: steers the search,
        never reported (the word's close() charges what it costs). None: none."""
        return None


class TokenScorer(Scorer):
    """Scores every token a prefix appends."""

    def step(self, state: State, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, K, V)``: what appending each candidate token ``tokens (B, V)`` (class
        ids) adds to each prefix's score."""
        raise NotImplementedError

    def append(self, state: State, token: torch.Tensor) -> State:
        """The state after appending ``token (B, K)`` (class ids; rows that appended
        nothing hold any id, and keep their state)."""
        raise NotImplementedError
