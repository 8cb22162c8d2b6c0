"""CTC decoding: greedy (best path), and a batched prefix beam search with a word
n-gram language model, hotwords, n-best lists and timestamps, on CPU or CUDA tensors.

* :func:`greedy_decode` ``(logits, logits_len=None, *, blank=0)``: the most probable
  class per frame, repeats collapsed, blanks dropped.
* :func:`ctc_beam_search` ``(logits, logits_len=None, *, blank=0, beam_size=16,
  nbest=1)``: label sequences by their CTC probability, summed over alignments.
* :class:`CtcBeamSearchDecoder` ``(tokens, *, blank=0, word_delimiter="|", lm=None,
  ...)``: the same search over a vocabulary, with words, a language model read from an
  ARPA file (:mod:`ngram_lm`) and hotwords; ``CtcBeamSearchDecoder.from_hf(tokenizer)``
  takes a wav2vec2 tokenizer's vocabulary, blank and word delimiter.

The prefix beam search (Graves 2012, sec. 7.4; Hannun et al. 2014) keeps for every
prefix two log-probabilities, of the alignments that end in a blank and of those that
end in its last label, and merges the paths that reach the same prefix by log-sum-exp.
With a beam wider than the number of prefixes it is exact: the n best are the n most
probable label sequences, and each ``acoustic_score`` is minus the exact CTC loss of
its tokens (the tests check both against brute force and against
``torch.nn.functional.ctc_loss``).

Where the package's C kernel is built (``_seq_loss_kernels/ctc_beam.c``) it runs the
search, on the host, for CPU and CUDA tensors alike: a CUDA batch's log-probabilities
are copied over once. Elsewhere (no compiler, or ``SEQ_LOSS_UTIL_KERNEL=0``) the same
search runs as tensor operations on the tensors' device, one loop over frames over the
batch, the beam and the candidate tokens ``(B, K, V)``: prefixes are identified by
64-bit hashes, so merging is a comparison of hashes, not Python, and the token history
is kept as back-pointers per frame, read once at the end. On a GPU that loop is bound
by its launches (about 108 a frame), so the host kernel is the faster of the two there
too. A hypothesis is a token sequence: two tokenisations of one text are two
hypotheses, except in ``CtcBeamSearchDecoder``'s n-best, which by default keeps each
text once, as its best spelling.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import NamedTuple
from collections.abc import Sequence

import numpy as np
import torch

import ngram_lm
import seq_loss_util
from ngram_lm import NgramLM, hash_parts

__all__ = ["greedy_decode", "ctc_beam_search", "CtcBeamSearchDecoder", "Hypothesis"]


class Hypothesis(NamedTuple):
    """One decoded hypothesis of one example.

    ``tokens``: class ids. ``words``: the words they spell (empty without a vocabulary).
    ``text``: the words joined by spaces. ``score``: what the search ranks by,
    ``acoustic_score + lm_weight * lm_score + word_score * len(words) + unk_score +
    token_lm_weight * token_lm_score`` plus ``hotword_weight`` per hotword (or phrase)
    matched. ``acoustic_score``: ln p(tokens |
    x) summed over alignments. ``lm_score``: ln p(words) under the language model, with
    ``<s>`` and ``</s>`` (0 without one). ``timesteps``: per token, the first frame at
    which it is emitted on the hypothesis's most probable path (where paths to one
    prefix merged, the more probable one's). ``word_spans``: per word, ``(start, end)``
    frames, ``start`` its first token's timestep, ``end`` one past its last token's.
    ``unk_score``: the part of ``score`` charged for unknown words: for each of ``words``
    outside the LM's vocabulary and the hotwords, the decoder's ``unk_score`` plus its
    ``partial_oov`` per 6 characters past the sixth (0 without an LM).
    ``token_lm_score``: ln p of ``tokens`` under the decoder's token-level model, with
    ``<s>`` and ``</s>`` (0 without one); ``score`` holds it times ``token_lm_weight``.
    """
    tokens: list
    words: list
    text: str
    score: float
    acoustic_score: float
    lm_score: float
    timesteps: list
    word_spans: list = []
    unk_score: float = 0.0
    token_lm_score: float = 0.0


# ------------------------------------------------------------------ input checks
def _check_logits(logits, logits_len, blank: int):
    """``(logits, logits_len (B,) long)`` after the port's own checks (ranks, dtypes,
    batch-first, lengths) and the blank's range: one home for them, in seq_loss_util."""
    logits, logits_len = seq_loss_util._check_logits_lengths(logits, logits_len)
    seq_loss_util._check_class_id(blank, "blank", logits.shape[2])
    return logits, logits_len


def greedy_decode(logits: torch.Tensor, logits_len: torch.Tensor | None = None, *,
                  blank: int = 0) -> torch.Tensor:
    """Best-path (greedy) CTC decoding of a batch.

    The most probable class at every valid frame, with repeats collapsed and blanks
    dropped: frames ``a a - a b b`` give ``a a b``.

    Args:
      logits: ``(B, T, C)`` scores, log-probabilities or probabilities (only their
        order per frame matters).
      logits_len: ``(B,)`` valid frames; None means all.
      blank: keyword-only, the blank's class id.

    Returns:
      ``(B, U')`` long label ids, ``U'`` the longest result, padded at the end with -1:
      the padding ``CtcLossModule`` and ``forced_align`` accept, so a transcript can be
      fed straight back. ``row[row >= 0].tolist()`` gives one example's ids.
      Vectorised over the batch; one host read for ``U'``.
    """
    logits, logits_len = _check_logits(logits, logits_len, blank)
    batch, frames, _ = logits.shape
    with torch.no_grad():
        best = logits.argmax(dim=2)  # (B, T)
        previous = torch.nn.functional.pad(best, (1, 0), value=-1)[:, :-1]  # (B, T)
        frame_ok = torch.arange(frames, device=logits.device)[None, :] < logits_len[:, None]
        keep = frame_ok & (best != blank) & (best != previous)  # (B, T)
        width = int(keep.sum(dim=1).max()) if batch and frames else 0
        # Kept frames go to their rank; the rest to one spare column, dropped after.
        slot = torch.where(keep, keep.cumsum(dim=1) - 1, width)
        out = torch.full((batch, width + 1), -1, dtype=torch.long, device=logits.device)
        out.scatter_(1, slot, torch.where(keep, best, -1))
        return out[:, :width]


# ------------------------------------------------------------------ hashing
_signed = ngram_lm._signed  # a 64-bit pattern as the int64 that holds it

_M1 = _signed(0x9E3779B97F4A7C15)
_M2 = _signed(0xBF58476D1CE4E5B9)


def _mix(h: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """A 64-bit hash of the sequence ``(..., item)`` from that of ``(...)``: int64
    arithmetic wraps, and the shifts are made logical by masking (splitmix64's
    finaliser), so the hash is not linear in the items."""
    z = h * _M1 + item + 1
    z = z ^ ((z >> 31) & ((1 << 33) - 1))
    z = z * _M2
    return z ^ ((z >> 29) & ((1 << 35) - 1))


# An unfinished word that begins no known word is ranked partial_oov lower, times its
# length in characters over this (pyctcdecode's AVG_TOKEN_LEN), and a completed unknown
# word keeps the part past this many characters: with a flat penalty, ranking only, one
# held-out utterance grew a 57-letter word, each letter as cheap as the first.
PARTIAL_OOV_CHARS = 6
# The defaults with a language model, chosen on bench_decode.py's held-out text (seeds
# 0-2, checked on 3-5 and at lm_weight 0.3 and 1.0; docs/decoding.md has the numbers).
# An unknown word costs unk_score (nats, whatever lm_weight), and partial_oov per 6
# letters past its sixth. Tokens below -5 nats at a frame are not appended
# (pyctcdecode's token_min_logp): it keeps the LM from inserting letters the acoustic
# model rules out, and is most of the speed. Prefixes further below the best than
# pyctcdecode's 10, plus what completing an unknown word costs (unk_score and the LM's
# unigram <unk>), are dropped: at 10, the prefix that had just completed an unknown word
# fell that far below those that had not yet paid for theirs, and the word was lost or
# merged into the next one.
DEFAULT_UNK_SCORE = -6.0
DEFAULT_PARTIAL_OOV = -15.0
LM_TOKEN_MIN_LOGP = -5.0
LM_BEAM_THRESHOLD = 10.0


def _read_lexicon(lexicon, lm: NgramLM | None, tokens: Sequence[str],
                  delimiter: str) -> list[str] | None:
    """A decoder's ``lexicon`` option as a list of words (None: none): ``"lm"`` the LM's
    vocabulary, a path to a file whose lines begin with a word (torchaudio's and
    flashlight's lexicon files: the word, then its spelling), or words. Raises where a
    word cannot be spelled with ``tokens`` (the decoder's, less the blank), naming it."""
    if lexicon is None:
        return None
    if isinstance(lexicon, str) and lexicon == "lm":
        if lm is None:
            raise ValueError("lexicon='lm' takes the language model's words, but there is no "
                             "language model")
        return _lm_words(lm)
    if isinstance(lexicon, (str, os.PathLike)):
        path = os.fspath(lexicon)
        if not os.path.isfile(path):
            raise ValueError(f"lexicon must be 'lm', a list of words or a lexicon file; "
                             f"{path!r} is not a file")
        with open(path, encoding="utf-8") as f:
            words = [line.split()[0] for line in f if line.strip()]
    else:
        words = list(lexicon)
        bad = [w for w in words if not isinstance(w, str) or not w or w != w.strip()
               or len(w.split()) != 1]
        if bad:
            raise ValueError(f"lexicon words must be non-empty strings without spaces, got "
                             f"{bad[0]!r}")
    if not words:
        raise ValueError("the lexicon is empty: no word could be decoded")
    spell = _speller(tokens, delimiter)
    for word in words:
        if not spell(word):
            raise ValueError(f"lexicon word {word!r} cannot be spelled with the decoder's "
                             "tokens")
    return words


def _read_token_lm(token_lm, weight, tokens: Sequence[str], blank: int) -> NgramLM | None:
    """A decoder's ``token_lm`` option as a model (None: none). Its words must be the
    decoder's tokens (the blank aside): a word model given here would score every
    token as ``<unk>``, so any word that is not a token raises, naming a few."""
    if token_lm is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            math.isfinite(weight) and weight >= 0):
        raise ValueError(f"token_lm_weight must be a finite number >= 0, got {weight!r}")
    if not isinstance(token_lm, NgramLM):
        if not isinstance(token_lm, (str, os.PathLike)):
            raise TypeError(f"token_lm must be a path to an ARPA file or an NgramLM, got "
                            f"{type(token_lm).__name__}")
        token_lm = NgramLM(token_lm)
    own = {t for i, t in enumerate(tokens) if i != blank}
    strangers = sorted(w for w in token_lm.vocab
                       if w not in own and w not in ("<s>", "</s>", "<unk>"))
    if strangers:
        raise ValueError(f"the token LM's vocabulary is not the decoder's tokens: "
                         f"{len(strangers)} of its words are not tokens (the blank aside), "
                         f"such as {strangers[:3]}; a token LM's words are the tokens "
                         "themselves (write_arpa over token sequences makes one)")
    return token_lm


def _speller(tokens: Sequence[str], delimiter: str):
    """``spell(word)``: whether ``word`` is a concatenation of the tokens' texts as the
    decoder reads them: with a delimiter, any tokens but it; in SentencePiece mode, one
    token marked with the word start, then unmarked ones."""
    if delimiter == "▁":
        first = {t[1:] for t in tokens if t.startswith("▁")}
        rest = {t for t in tokens if t and not t.startswith("▁")}
    else:
        first = rest = {t for t in tokens if t and t != delimiter}

    def spell(word: str) -> bool:
        reach = [False] * (len(word) + 1)
        for piece in first:  # the first token, "" included (a bare word-start token)
            if word.startswith(piece):
                reach[len(piece)] = True
        for i in range(len(word)):
            if reach[i]:
                for piece in rest:
                    if piece and word.startswith(piece, i):
                        reach[i + len(piece)] = True
        return reach[len(word)] and (delimiter == "▁" or len(word) > 0)

    return spell


def _lm_words(lm: NgramLM) -> list[str]:
    """The LM's vocabulary, less ``<s>``, ``</s>`` and ``<unk>``."""
    return [w for w in lm.vocab if w not in ("<s>", "</s>", "<unk>")]


def _known_words(lm: NgramLM | None, hotwords=(), lexicon=None) -> list[str] | None:
    """The words a decoder knows: the lexicon's if it has one, else the LM's vocabulary,
    and the hotwords' words; None where it has neither (no word is unknown then). Any
    other word a hypothesis completes is unknown and costs ``unk_score`` (and more when
    long)."""
    if lexicon is None and lm is None:
        return None
    spelled = list(lexicon) if lexicon is not None else _lm_words(lm)  # type: ignore[arg-type]
    return spelled + [w for phrase in (hotwords or []) for w in phrase.split()]


# ------------------------------------------------------------------ the search
class _Words:
    """What the search needs to know about words, as tensors on one device: each
    token's characters (hash parts), whether it ends or starts a word, the LM and the
    hotwords."""

    def __init__(self, tokens: Sequence[str], delimiter: str | None, lm: NgramLM | None,
                 hotwords, lm_weight: float, word_score: float, hotword_weight: float,
                 partial_oov: float, unk_score: float, device, lexicon=None,
                 token_lm: NgramLM | None = None, token_lm_weight: float = 0.0):
        self.prefix_mode = delimiter == "\u2581"
        # A token-level model: each token's id in it (<unk>'s for tokens it lacks).
        self.tlm = token_lm.to(device) if token_lm is not None else None
        self.tlm_weight = float(token_lm_weight) if token_lm is not None else 0.0
        self.tlm_ids = torch.tensor(
            [token_lm.vocab.get(t, token_lm.unk) for t in tokens] if token_lm is not None
            else [0] * len(tokens), dtype=torch.long, device=device)
        chars = []
        for token in tokens:
            if self.prefix_mode:
                chars.append(token[1:] if token.startswith("\u2581") else token)
            else:
                chars.append("" if token == delimiter else token)
        parts = [hash_parts(c) for c in chars]
        self.char_hash = torch.tensor([p[0] for p in parts], dtype=torch.long, device=device)
        self.char_power = torch.tensor([p[1] for p in parts], dtype=torch.long, device=device)
        self.char_len = torch.tensor([len(c) for c in chars], dtype=torch.long, device=device)
        if self.prefix_mode:
            self.boundary = torch.tensor([t.startswith("\u2581") for t in tokens],
                                         device=device)
        else:
            self.boundary = torch.tensor([t == delimiter for t in tokens], device=device)
        self.lm = lm.to(device) if lm is not None else None
        self.lm_weight, self.word_score = float(lm_weight), float(word_score)
        self.hotword_weight = float(hotword_weight)
        # Hotword phrases by length: the hash of their words' hashes.
        phrases = [h.split() for h in (hotwords or []) if h.split()]
        self.phrase_len = max((len(p) for p in phrases), default=0)
        keys = []
        for phrase in phrases:  # the search's own mixing, on one-element tensors
            h = torch.tensor(len(phrase))
            for word in phrase:
                h = _mix(h, torch.tensor(ngram_lm.string_hash(word)))
            keys.append(int(h))
        self.phrases = torch.tensor(sorted(set(keys)), dtype=torch.long, device=device)
        self.context = max(self.phrase_len - 1, 0)  # earlier words a phrase may span
        # With a model or a lexicon: every prefix of the words it knows (and of the
        # hotwords), so the search can tell an unfinished word that can still become
        # one, and the words themselves: a completed word outside them costs unk_score
        # (-inf: it is forbidden, and so is every prefix that begins no known word).
        spelled = _known_words(lm, hotwords, lexicon)
        self.models_unknown = spelled is not None
        self.partial_oov = float(partial_oov) if self.models_unknown else 0.0
        self.unk_score = float(unk_score) if self.models_unknown else 0.0
        self.forbidden = self.unk_score == -math.inf
        word_hashes, prefix_hashes = ngram_lm.prefix_hashes(spelled or [])
        self.prefixes = torch.from_numpy(np.unique(prefix_hashes)).to(device)
        self.words = torch.from_numpy(np.unique(word_hashes)).to(device)
        self._arrays: dict | None = None  # the C kernel's view, made on first use

    # Prefixes times non-boundary tokens that the table of known continuations may
    # take to build (a million prefixes at 32 tokens, a few seconds once per decoder);
    # past it the C kernel goes without (slower with an LM and no pruning, same result).
    CHILD_TABLE_BUDGET = 1 << 25

    def _children(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The C kernel's table of known continuations (CPU): for each known prefix
        hash (and 0, the empty prefix), the tokens that continue the unfinished word
        into a prefix that is still known, by the kernel's own rule (the prefix hash
        grown by the token's characters is a known prefix, or the token adds none).
        Returns sorted ``keys``, ``start`` offsets (one more than the keys) and the
        ``tokens``; all empty where there is no model or the table would be too big.
        With it, the kernel bounds a word-continuing extension of a known prefix by
        the unknown-prefix penalty unless the token is listed: at beam 100 with an LM,
        about 240 of the 280 extensions a frame tried were such words."""
        empty = torch.zeros(0, dtype=torch.long)
        prefixes = self.prefixes.cpu()
        inner = (~self.boundary.cpu()).nonzero().flatten()
        keys = torch.cat([torch.zeros(1, dtype=torch.long), prefixes]).unique()
        if (not prefixes.numel() or not inner.numel()
                or keys.numel() * inner.numel() > self.CHILD_TABLE_BUDGET):
            return empty, torch.zeros(1, dtype=torch.long), empty
        power, part = self.char_power.cpu()[inner], self.char_hash.cpu()[inner]
        length = self.char_len.cpu()[inner]
        kernel = _kernel()
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

    def completion(self, state):
        """Per beam ``(B, K)``: the score of completing its partial word now (LM, word
        score, hotwords, unk_score), the LM's ln p of that word, the hotword bonus, the
        LM context afterwards, and what the word costs as an unknown one (0 if known)."""
        has_word = state["partial_len"] > 0
        lm_word = torch.zeros_like(state["lm"])
        context = state.get("context")
        if self.lm is not None:
            shape = has_word.shape
            ids = self.lm.lookup(state["partial_hash"].reshape(-1))
            depth = self.lm.order - 1  # 0 for a unigram model: no -1 in these shapes
            lm_word, context = self.lm.score(state["context"].reshape(shape.numel(), depth),
                                             ids)
            lm_word = lm_word.reshape(shape).to(state["lm"].dtype)
            context = torch.where(has_word[..., None], context.reshape(*shape, depth),
                                  state["context"])
        bonus = torch.zeros_like(state["lm"])
        if self.phrases.numel():
            word = state["partial_hash"]
            recent = state.get("recent")  # (B, K, context) word hashes, most recent last
            for length in range(1, self.phrase_len + 1):
                h = torch.full_like(word, length)
                ok = torch.ones_like(has_word)
                for j in range(length - 1):
                    earlier = recent[..., self.context - (length - 1) + j]
                    ok = ok & (earlier != 0)
                    h = _mix(h, earlier)
                h = _mix(h, word)
                at = torch.searchsorted(self.phrases, h.reshape(-1)).clamp(
                    max=self.phrases.numel() - 1).reshape(h.shape)
                bonus = bonus + (ok & (self.phrases[at] == h)).to(bonus.dtype)
            bonus = bonus * self.hotword_weight
        oov = has_word & (~_member(self.words, state["partial_hash"]) if self.models_unknown
                          else torch.zeros_like(has_word))
        delta = self.lm_weight * lm_word + self.word_score + bonus
        ucost = torch.where(oov, self.unknown_cost(state["partial_len"]), 0.0).to(delta.dtype)
        delta = delta + ucost
        zero = torch.zeros_like(delta)
        return (torch.where(has_word, delta, zero), torch.where(has_word, lm_word, zero),
                torch.where(has_word, bonus, zero), context, ucost)

    def extra(self, state):
        """The non-acoustic part of each beam's score so far (in the scores' dtype: the
        word count times a float was float32, off by 2e-8 in a float64 decode)."""
        words = state["words"].to(state["lm"].dtype)
        extra = self.lm_weight * state["lm"] + self.word_score * words + state["hot"] + state[
            "unkc"]
        if self.tlm is not None:
            extra = extra + self.tlm_weight * state["tlm"]
        return extra

    def unknown_cost(self, length):
        """What a completed unknown word of ``length`` characters costs (float64):
        ``unk_score``, and ``partial_oov`` per ``PARTIAL_OOV_CHARS`` characters past
        the first ``PARTIAL_OOV_CHARS``."""
        excess = (length.double() / PARTIAL_OOV_CHARS - 1.0).clamp(min=0.0)
        return self.unk_score + self.partial_oov * excess

    def penalty(self, partial_hash, partial_len):
        """The search's rank penalty of an unfinished word that begins no word the
        model knows: ``partial_oov`` times ``max(1, n / PARTIAL_OOV_CHARS)`` for ``n``
        characters, 0 elsewhere. It ranks: once the word is complete, ``unknown_cost``
        replaces it (the same part past ``PARTIAL_OOV_CHARS``, ``unk_score`` for the
        rest)."""
        if not self.prefixes.numel():
            return torch.zeros(partial_len.shape, dtype=torch.float64,
                               device=partial_len.device)
        unknown = (partial_len > 0) & ~_member(self.prefixes, partial_hash)
        if self.forbidden:
            return torch.where(unknown, -math.inf, 0.0).double()
        scale = (partial_len.double() / PARTIAL_OOV_CHARS).clamp(min=1.0)
        return torch.where(unknown, self.partial_oov * scale, 0.0)

    def arrays(self) -> dict:
        """These tables as the C kernel takes them (CPU tensors), made once."""
        if self._arrays is None:
            self._arrays = self._make_arrays()
        return self._arrays

    def _make_arrays(self) -> dict:
        lm = self.lm
        tlm = self.tlm
        return dict(token_lm=_lm_tables(tlm), tlm_weight=self.tlm_weight,
                    tlm_max=tlm.max_log_prob() if tlm is not None else 0.0,
                    tlm_ids=self.tlm_ids.cpu().contiguous(), lm=_lm_tables(lm),
                    char_hash=self.char_hash, char_power=self.char_power,
                    char_len=self.char_len, boundary=self.boundary.to(torch.uint8),
                    prefix_mode=self.prefix_mode, lm_weight=self.lm_weight,
                    word_score=self.word_score, hotword_weight=self.hotword_weight,
                    partial_oov=self.partial_oov, prefixes=self.prefixes,
                    phrases=self.phrases, phrase_len=self.phrase_len,
                    children=self._children(),
                    lm_max=lm.max_log_prob() if lm is not None else 0.0,
                    unk_score=self.unk_score, partial_chars=float(PARTIAL_OOV_CHARS),
                    words=self.words)

    def advance(self, state, src, token, appended, completion):
        """The word state of the selected candidates: gathered from their beams, then,
        for each appended token, the word it completes and the characters it adds."""
        delta, lm_word, bonus, context, ucost = completion
        new = {k: _take(v, src) for k, v in state.items()}
        tok = token.clamp(min=0)
        ends = appended & self.boundary[tok] & (new["partial_len"] > 0)
        new["lm"] = torch.where(ends, new["lm"] + _take(lm_word, src), new["lm"])
        new["words"] = new["words"] + ends.long()
        new["unkc"] = torch.where(ends, new["unkc"] + _take(ucost, src), new["unkc"])
        new["hot"] = torch.where(ends, new["hot"] + _take(bonus, src), new["hot"])
        if self.lm is not None:
            new["context"] = torch.where(ends[..., None], _take(context, src), new["context"])
        if self.context:
            shifted = torch.cat([new["recent"][..., 1:], new["partial_hash"][..., None]], -1)
            new["recent"] = torch.where(ends[..., None], shifted, new["recent"])
        if self.tlm is not None:  # the token appended, scored, then its context
            step = self.token_lp(new["tctx"], tok).to(new["tlm"].dtype)
            new["tlm"] = torch.where(appended, new["tlm"] + step, new["tlm"])
            depth = self.tlm.order - 1
            shifted = torch.cat([new["tctx"][..., 1:], self.tlm_ids[tok][..., None]], -1) \
                if depth else new["tctx"]
            new["tctx"] = torch.where(appended[..., None], shifted, new["tctx"])
        # A boundary token starts a new word: empty (a delimiter) or its own characters.
        start = appended & self.boundary[tok]
        base_hash = torch.where(start, 0, new["partial_hash"])
        base_len = torch.where(start, 0, new["partial_len"])
        grown = base_hash * self.char_power[tok] + self.char_hash[tok]
        new["partial_hash"] = torch.where(appended, grown, new["partial_hash"])
        new["partial_len"] = torch.where(appended, base_len + self.char_len[tok],
                                         new["partial_len"])
        return new

    def start(self, batch, beam, device, dtype):
        state = dict(lm=torch.zeros(batch, beam, dtype=dtype, device=device),
                     words=torch.zeros(batch, beam, dtype=torch.long, device=device),
                     unkc=torch.zeros(batch, beam, dtype=dtype, device=device),
                     hot=torch.zeros(batch, beam, dtype=dtype, device=device),
                     partial_hash=torch.zeros(batch, beam, dtype=torch.long, device=device),
                     partial_len=torch.zeros(batch, beam, dtype=torch.long, device=device))
        if self.lm is not None:
            state["context"] = self.lm.start(batch * beam).reshape(batch, beam,
                                                                   self.lm.order - 1)
        if self.context:
            state["recent"] = torch.zeros(batch, beam, self.context, dtype=torch.long,
                                          device=device)
        if self.tlm is not None:
            state["tlm"] = torch.zeros(batch, beam, dtype=dtype, device=device)
            state["tctx"] = self.tlm.start(batch * beam).reshape(batch, beam,
                                                                 self.tlm.order - 1)
        return state

    def token_lp(self, tctx: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """The token model's ln p of ``token`` (any shape ``S``, class ids) after the
        contexts ``tctx`` ``(*S, order - 1)``, in float64."""
        tlm = self.tlm
        assert tlm is not None
        lp, _ = tlm.score(tctx.reshape(token.numel(), tlm.order - 1),
                          self.tlm_ids[token.clamp(min=0)].reshape(-1))
        return lp.reshape(token.shape)

    def token_step(self, state, cand_tok: torch.Tensor) -> torch.Tensor:
        """``token_lm_weight`` times the token model's ln p of each candidate token
        ``(B, V)`` after each beam ``(B, K)``: ``(B, K, V)`` in the scores' dtype."""
        batch, beam = state["tlm"].shape
        width = cand_tok.shape[1]
        depth = state["tctx"].shape[-1]
        tctx = state["tctx"][:, :, None, :].expand(batch, beam, width, depth)
        token = cand_tok[:, None, :].expand(batch, beam, width)
        return (self.tlm_weight * self.token_lp(tctx, token)).to(state["tlm"].dtype)

    def finish(self, state):
        """Per beam: the score of ending here (its last word, then ``</s>``; the token
        model's ``</s>``), the LM's ln p of both, and the token model's ln p of all the
        tokens with its ``</s>`` (0 without one)."""
        delta, lm_word, bonus, context, _ = self.completion(state)
        lm_end = torch.zeros_like(delta)
        shape = delta.shape
        if self.lm is not None:
            eos = torch.full((delta.numel(),), self.lm.eos, dtype=torch.long,
                             device=delta.device)
            lm_end, _ = self.lm.score(context.reshape(delta.numel(), self.lm.order - 1), eos)
            lm_end = lm_end.reshape(shape).to(delta.dtype)
        end = delta + self.lm_weight * lm_end
        tlm = torch.zeros_like(delta)
        if self.tlm is not None:
            eos = torch.full((delta.numel(),), self.tlm.eos, dtype=torch.long,
                             device=delta.device)
            t_end, _ = self.tlm.score(state["tctx"].reshape(delta.numel(), self.tlm.order - 1),
                                      eos)
            t_end = t_end.reshape(shape).to(delta.dtype)
            end = end + self.tlm_weight * t_end
            tlm = state["tlm"] + t_end
        return end, lm_word + lm_end, tlm


def _lm_tables(lm: NgramLM | None) -> dict:
    """An n-gram model's tables as the C kernel takes them (CPU tensors); order 0 for
    none."""
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


def _member(table: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Whether each of ``keys`` is in the sorted 1-D ``table``."""
    if not table.numel():
        return torch.zeros_like(keys, dtype=torch.bool)
    at = torch.searchsorted(table, keys.reshape(-1)).clamp(max=table.numel() - 1)
    return (table[at] == keys.reshape(-1)).reshape(keys.shape)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, k], ...]``: the rows of beam tensors ``(B, K, ...)`` picked by
    ``index`` ``(B, K')``."""
    if x.dim() == 2:
        return x.gather(1, index)
    return x.gather(1, index[..., None].expand(*index.shape, x.shape[-1]))


def _kernel():
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


def _search_device(device) -> torch.device:
    """Where the search runs for tensors on ``device``: the host wherever the C kernel
    is built, CUDA tensors included (their log-probabilities are copied over once),
    else ``device`` (tensor operations). On a GPU the tensor search is bound by
    launches: counted with torch.profiler, it issues 108 ATen ops a frame (176 with a
    vocabulary), some hundreds of milliseconds for 500 frames, where the kernel takes
    about 15 ms on two CPU cores for the same batch of 32."""
    return torch.device("cpu") if _kernel() is not None else torch.device(device)


def _search(log_probs, logits_len, blank: int, beam: int, nbest: int, words: _Words | None,
            token_min_logp: float | None, beam_threshold: float | None):
    """The batched prefix beam search: the C kernel where it is built (on the host,
    see _search_device), else tensor operations on the tensors' device. ``words``
    must be on the search's device. Returns, on the host, per example the ``nbest``
    (or fewer) hypotheses as ``(tokens, timesteps, score, acoustic, lm)`` tuples,
    best first."""
    if not log_probs.shape[0]:  # an empty batch: no reshape can infer a size from it
        return []
    kernel = _kernel()
    if kernel is None:
        return _search_tensors(log_probs, logits_len, blank, beam, nbest, words,
                               token_min_logp, beam_threshold)
    width = min(beam + 1, log_probs.shape[2] - 1)
    log_probs, logits_len = log_probs.cpu().contiguous(), logits_len.cpu().contiguous()
    count, tokens, times, lengths, score, acoustic, lm, tlm = kernel.beam_search(
        log_probs, logits_len, blank, beam, width, nbest,
        -math.inf if token_min_logp is None else token_min_logp,
        math.inf if beam_threshold is None else beam_threshold,
        words.arrays() if words is not None else None)
    return [[(tokens[b, n, :lengths[b, n]].tolist(), times[b, n, :lengths[b, n]].tolist(),
              float(score[b, n]), float(acoustic[b, n]), float(lm[b, n]), float(tlm[b, n]))
             for n in range(count[b])] for b in range(len(count))]


def _search_tensors(log_probs, logits_len, blank: int, beam: int, nbest: int,
                    words: _Words | None, token_min_logp: float | None,
                    beam_threshold: float | None):
    """The search as tensor operations over ``(B, K, V)``, one loop over frames, on the
    tensors' device (where the C kernel is not built); the C kernel computes the
    same."""
    batch, frames, classes = log_probs.shape
    device, dtype = log_probs.device, log_probs.dtype
    # Candidate tokens per frame: the K + 1 most probable non-blank ones. A token
    # outside them cannot make a prefix the beam would keep: from its own beam alone,
    # K others score at least as much. (Merges into prefixes already in the beam are
    # made for every token, below.) The word boundary always competes: the LM and word
    # scores change its rank.
    width = min(beam + 1, classes - 1)
    neg = torch.tensor(-math.inf, dtype=dtype, device=device)
    slots = torch.arange(beam, device=device)

    pb = torch.full((batch, beam), -math.inf, dtype=dtype, device=device)
    pb[:, 0] = 0.0  # the empty prefix, before the first frame
    pnb = torch.full_like(pb, -math.inf)
    length = torch.zeros(batch, beam, dtype=torch.long, device=device)
    last = torch.full((batch, beam), -1, dtype=torch.long, device=device)
    hashes = torch.zeros(batch, beam, dtype=torch.long, device=device)
    parent = torch.zeros(batch, beam, dtype=torch.long, device=device)
    state: dict = words.start(batch, beam, device, dtype) if words is not None else {}
    back_src = torch.empty(frames, batch, beam, dtype=torch.long, device=device)
    back_tok = torch.empty(frames, batch, beam, dtype=torch.long, device=device)
    priority = torch.zeros(classes, dtype=dtype, device=device)
    priority[blank] = -math.inf  # the blank is never appended
    if words is not None and not words.prefix_mode and width < classes - 1:
        priority = torch.where(words.boundary & (priority == 0), math.inf, priority)

    for t in range(frames):
        lp = log_probs[:, t]  # (B, C)
        alive = pb.isfinite() | pnb.isfinite()  # (B, K)
        total = torch.logaddexp(pb, pnb)
        last_lp = torch.where(last >= 0, lp.gather(1, last.clamp(min=0)), neg)
        stay_b = total + lp[:, blank, None]
        stay_nb = pnb + last_lp
        # A prefix whose parent (itself less its last token) is also in the beam is
        # reached from it by that token too: merge the two paths (log-sum-exp).
        match = ((parent[:, :, None] == hashes[:, None, :])
                 & (length[:, :, None] == length[:, None, :] + 1)
                 & alive[:, :, None] & alive[:, None, :])  # (B, K child, K parent)
        has_parent = match.any(2)
        pidx = match.long().argmax(2)
        p_b, p_total, p_last = pb.gather(1, pidx), total.gather(1, pidx), last.gather(1, pidx)
        via_parent = torch.where(p_last == last, p_b, p_total) + last_lp
        via_parent = torch.where(has_parent, via_parent, neg)
        parent_wins = via_parent > torch.logaddexp(stay_b, stay_nb)  # for the timesteps
        stay_nb = torch.logaddexp(stay_nb, via_parent)
        stay = torch.where(alive, torch.logaddexp(stay_b, stay_nb), neg)

        # New prefixes: each beam extended by each candidate token.
        cand_lp, cand_tok = torch.topk(lp + priority, width, dim=1)  # (B, V)
        cand_lp = lp.gather(1, cand_tok)
        ext = torch.where(cand_tok[:, None, :] == last[:, :, None], pb[:, :, None],
                          total[:, :, None]) + cand_lp[:, None, :]  # (B, K, V)
        # Extensions that are already in the beam were merged above.
        exists = torch.zeros(batch, beam * classes + 1, dtype=torch.bool, device=device)
        exists.scatter_(1, torch.where(has_parent, pidx * classes + last.clamp(min=0),
                                       beam * classes), True)
        known = exists.gather(1, (slots[None, :, None] * classes + cand_tok[:, None, :])
                              .reshape(batch, -1)).reshape(batch, beam, width)
        # (Where tokens tie at -inf, topk may pick the blank: it is never appended.)
        keep = alive[:, :, None] & ~known & (cand_tok != blank)[:, None, :]
        if token_min_logp is not None:
            keep = keep & (cand_lp[:, None, :] >= token_min_logp)
        ext = torch.where(keep, ext, neg)

        rank_stay, rank_ext = stay, ext
        if words is not None:
            completion = words.completion(state)
            extra = words.extra(state)
            rank_stay = stay + extra + words.penalty(state["partial_hash"],
                                                     state["partial_len"]).to(dtype)
            ends = words.boundary[cand_tok][:, None, :]  # (B, 1, V): completes a word
            rank_ext = ext + extra[:, :, None]
            if words.tlm is not None:  # the token model's ln p of each candidate
                rank_ext = rank_ext + words.token_step(state, cand_tok)
            rank_ext = rank_ext + torch.where(ends, completion[0][:, :, None], 0.0)
            # The word each extension leaves unfinished, for the same penalty.
            base_hash = torch.where(ends, 0, state["partial_hash"][:, :, None])
            base_len = torch.where(ends, 0, state["partial_len"][:, :, None])
            new_hash = (base_hash * words.char_power[cand_tok][:, None, :]
                        + words.char_hash[cand_tok][:, None, :])
            new_len = base_len + words.char_len[cand_tok][:, None, :]
            rank_ext = rank_ext + words.penalty(new_hash, new_len).to(dtype)
        ranks = torch.cat([rank_stay, rank_ext.reshape(batch, -1)], dim=1)  # (B, K + K V)
        order = torch.sort(ranks, dim=1, descending=True, stable=True)[1][:, :beam]
        chosen = ranks.gather(1, order)
        if beam_threshold is not None:
            chosen = torch.where(chosen >= chosen[:, :1] - beam_threshold, chosen, neg)
        appended = order >= beam
        flat = (order - beam).clamp(min=0)
        src = torch.where(appended, flat // width, order)
        token = torch.where(appended, cand_tok.gather(1, flat % width), -1)
        dead = chosen == -math.inf

        new_pb = torch.where(appended, neg, stay_b.gather(1, src))
        new_pnb = torch.where(appended, ext.reshape(batch, -1).gather(1, flat),
                              stay_nb.gather(1, src))
        new_pb, new_pnb = torch.where(dead, neg, new_pb), torch.where(dead, neg, new_pnb)
        src_last, src_hash = last.gather(1, src), hashes.gather(1, src)
        new_last = torch.where(appended, token, src_last)
        new_hash = torch.where(appended, _mix(src_hash, token), src_hash)
        new_parent = torch.where(appended, src_hash, parent.gather(1, src))
        new_length = length.gather(1, src) + appended.long()
        # The history: where each slot came from, and the token it appended at t (a
        # prefix whose parent's path was the more probable takes the parent's history).
        via = ~appended & parent_wins.gather(1, src)
        hist_src = torch.where(via, pidx.gather(1, src), src)
        hist_tok = torch.where(appended, token, torch.where(via, src_last, -1))
        if words is not None:
            new_state = words.advance(state, src, token, appended, completion)

        active = (t < logits_len)[:, None]  # (B, 1): padded frames change nothing
        pb, pnb = torch.where(active, new_pb, pb), torch.where(active, new_pnb, pnb)
        last = torch.where(active, new_last, last)
        hashes = torch.where(active, new_hash, hashes)
        parent = torch.where(active, new_parent, parent)
        length = torch.where(active, new_length, length)
        back_src[t] = torch.where(active, hist_src, slots)
        back_tok[t] = torch.where(active, hist_tok, -1)
        if words is not None:
            state = {k: torch.where(active.reshape(-1, *[1] * (v.dim() - 1)), new_state[k], v)
                     for k, v in state.items()}

    acoustic = torch.logaddexp(pb, pnb)  # (B, K)
    final, lm, tlm = acoustic, torch.zeros_like(acoustic), torch.zeros_like(acoustic)
    if words is not None:
        end, lm_end, tlm = words.finish(state)
        final = acoustic + words.extra(state) + end
        lm = state["lm"] + lm_end
    final = torch.where(acoustic.isfinite(), final, neg)
    best = torch.sort(final, dim=1, descending=True, stable=True)[1][:, :nbest]  # (B, N)
    picked = [x.gather(1, best) for x in (final, acoustic, lm, tlm)]
    # One read back to the host, then the histories are followed on it.
    src_np, tok_np = back_src.cpu().numpy(), back_tok.cpu().numpy()
    best_np = best.cpu().numpy()
    final_np, acoustic_np, lm_np, tlm_np = (x.cpu().numpy() for x in picked)
    slot = best_np.copy()
    rows = np.arange(batch)[:, None]
    emitted = np.full((frames, batch, slot.shape[1]), -1, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        emitted[t] = tok_np[t][rows, slot]
        slot = src_np[t][rows, slot]
    results = []
    for b in range(batch):
        hyps = []
        for n in range(best_np.shape[1]):
            if not np.isfinite(final_np[b, n]):
                continue
            frames_at = np.nonzero(emitted[:, b, n] >= 0)[0]
            hyps.append((emitted[frames_at, b, n].tolist(), frames_at.tolist(),
                         float(final_np[b, n]), float(acoustic_np[b, n]), float(lm_np[b, n]),
                         float(tlm_np[b, n])))
        results.append(hyps)
    return results


# The widest beam either search takes. The C kernel sizes its buffers as frames x beam
# in int64 and its indices as int: a beam of 2**64 once wrapped to 0 in ctypes and hung,
# and 2**64 + 3 ran silently with a beam of 3. A million prefixes is far past any use.
MAX_BEAM = 1 << 20


def _check_options(beam_size, nbest, token_min_logp=None, beam_threshold=None):
    for name, value in (("beam_size", beam_size), ("nbest", nbest)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
                1 <= value <= MAX_BEAM):
            raise ValueError(f"{name} must be an integer in [1, {MAX_BEAM}], got {value!r}")
    if nbest > beam_size:
        raise ValueError(f"nbest ({nbest}) cannot exceed beam_size ({beam_size})")
    for name, value in (("token_min_logp", token_min_logp),
                        ("beam_threshold", beam_threshold)):
        if value is not None and (isinstance(value, bool) or not (
                isinstance(value, (int, float, np.integer, np.floating))
                and math.isfinite(value))):
            raise ValueError(f"{name} must be a finite number or None, got {value!r}")
    # Either of these out of range keeps no prefix at all: an empty result, not a search.
    if token_min_logp is not None and token_min_logp > 0:
        raise ValueError(f"token_min_logp is a log-probability: it must be <= 0 (no token "
                         f"is more probable than 1), got {token_min_logp!r}")
    if beam_threshold is not None and beam_threshold < 0:
        raise ValueError(f"beam_threshold is how far below the best a prefix may score: it "
                         f"must be >= 0 (0 keeps only the best), got {beam_threshold!r}")


def _check_finite_frames(log_probs: torch.Tensor, logits_len: torch.Tensor) -> None:
    """Raises when a valid frame's log-probabilities hold NaN: logits with NaN or +inf,
    or a frame whose logits are all -inf. Such a model has diverged; a search over it
    would return NaN scores and hypotheses cut short there. One host read."""
    if not log_probs.numel():
        return
    bad = seq_loss_util._first(seq_loss_util._bad_frames(log_probs, logits_len))
    if bad is not None:
        b, t = bad
        raise ValueError(f"logits of example {b} at frame {t} hold NaN or +inf, or only -inf "
                         "(no class possible): the model has diverged, and no hypothesis "
                         "over such a frame means anything")


def _log_probs(logits, logits_len):
    """log_softmax in float32 (float64 for float64). The tensor search reads every
    frame, so for it padded frames are set to 0: whatever they hold (NaN) never
    reaches a score. The C kernel never reads past an example's length, and a row's
    log_softmax reads that row alone: it takes them as they are (a 2 MB pass saved
    per batch of 32 x 500 x 32)."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    log_probs = torch.log_softmax(logits.detach().to(compute), dim=2)
    _check_finite_frames(log_probs, logits_len)
    if _kernel() is None:
        frames = torch.arange(logits.shape[1], device=logits.device)
        log_probs.masked_fill_((frames[None, :] >= logits_len[:, None])[:, :, None], 0.0)
    return log_probs


def ctc_beam_search(logits: torch.Tensor, logits_len: torch.Tensor | None = None, *,
                    blank: int = 0, beam_size: int = 16, nbest: int = 1,
                    token_min_logp: float | None = None,
                    beam_threshold: float | None = None) -> list:
    """Prefix beam search over label sequences, by CTC probability (no vocabulary).

    Args:
      logits: ``(B, T, C)`` logits or log-probabilities (``log_softmax`` is applied).
        float64 decodes in float64, the rest in float32.
      logits_len: ``(B,)`` valid frames (None: all); padded frames are never read.
      blank: the blank's class id (any).
      beam_size: prefixes kept per frame, at most ``MAX_BEAM`` (2**20).
      nbest: hypotheses returned per example (at most ``beam_size``).
      token_min_logp: optional, for speed: tokens below this log-probability at a frame
        are not appended there (<= 0).
      beam_threshold: optional, for speed: prefixes scoring more than this below the
        best are dropped (>= 0).

    Raises ``ValueError`` where a valid frame's logits hold NaN or +inf, or only -inf:
    the model has diverged, and a hypothesis over that frame would mean nothing.

    Returns:
      ``hyps[b]``: a best-first list of :class:`Hypothesis` (``words`` empty, ``text``
      "", ``lm_score`` 0).
    """
    logits, logits_len = _check_logits(logits, logits_len, blank)
    _check_options(beam_size, nbest, token_min_logp, beam_threshold)
    if logits.shape[2] < 2:
        raise ValueError("logits need a class besides the blank (C >= 2)")
    with torch.no_grad():
        found = _search(_log_probs(logits, logits_len), logits_len, int(blank), int(beam_size),
                        int(nbest), None, token_min_logp, beam_threshold)
    return [[Hypothesis(tokens, [], "", score, acoustic, 0.0, times, [])
             for tokens, times, score, acoustic, *_ in hyps] for hyps in found]


class CtcBeamSearchDecoder:
    """Prefix beam search over a vocabulary, with words, a word n-gram language model
    and hotwords.

    Args:
      tokens: the string of each class id, in id order (a wav2vec2 tokenizer's
        vocabulary); its length must be the logits' C.
      blank: the blank's class id.
      word_delimiter: the token between words (``"|"`` for wav2vec2), or ``"\u2581"``
        for SentencePiece vocabularies, whose tokens mark a word's start with it.
      lm: a path to an ARPA file (plain or gzipped) or an :class:`ngram_lm.NgramLM`.
      lm_weight: the language model's weight (its scores are natural logs).
      word_score: added per word (a length bonus, or penalty if negative).
      hotwords: words or phrases (space-separated) to favour, spelled as the tokens
        spell them (wav2vec2's vocabulary is upper case).
      hotword_weight: added each time a hotword or phrase is completed.
      beam_size, nbest: as :func:`ctc_beam_search`.
      token_min_logp, beam_threshold: as :func:`ctc_beam_search`. ``"auto"`` (the
        default): with a language model, -5 (pyctcdecode's ``token_min_logp``) and 10
        (pyctcdecode's ``beam_prune_logp``) plus what completing an unknown word costs,
        ``-(unk_score + lm_weight * ln p(<unk>))`` with the LM's unigram ``<unk>``, so
        that the prefix that has just paid for one is not dropped for it; without a
        language model, none (the exact search). None turns either off.
      unk_score: with a language model (or a lexicon), added to the score for every
        completed word outside its vocabulary (the lexicon) and the hotwords (nats, not
        scaled by ``lm_weight``; on top of the LM's own ``<unk>`` probability), with
        ``partial_oov`` for every 6 characters past such a word's sixth. Default -6.
        ``-inf``: such words are never decoded. Positive warns.
      partial_oov: with a language model, how much lower the search ranks a prefix
        whose unfinished word begins no word the model (or a hotword) knows, times
        ``max(1, n / 6)`` for an unfinished word of ``n`` characters, so that such
        spellings leave the beam early, the sooner the longer (pyctcdecode's rule for
        a partial word). A completed unknown word keeps the part past 6 characters in
        its score (with ``unk_score``), so that running words together into one long
        unknown word never pays; the first 6 characters' part steers the search only.
        Default -15; 0 turns it off.
      lexicon: the words the decoder knows, in place of the LM's vocabulary: a list of
        words, a path to a lexicon file (torchaudio's and flashlight's: a word, then its
        spelling, per line; the spelling is not read, the decoder spells with its
        tokens), or ``"lm"`` (the LM's own words). A word outside it (and the hotwords)
        costs ``unk_score`` as an unknown word; with ``unk_score=-inf`` only its words
        are decoded (flashlight's ``LexiconDecoder``), every prefix that begins none
        leaves the beam at once, the "auto" threshold is off (a prefix of a word ranks as
        though it will complete, and some never do), and an example none of whose
        hypotheses ends in a lexicon word gets an empty list. Works without an LM too. A
        word the tokens cannot spell raises ``ValueError`` naming it.
      distinct_texts: the n-best holds each text once (as pyctcdecode's does): of the
        token sequences that spell one text (a leading or trailing delimiter, two
        SentencePiece tokenisations), the best-scoring one stands for it, its scores
        unchanged (the max, not a sum over spellings). The search then returns up to
        ``beam_size`` hypotheses to fill ``nbest`` distinct texts. False: every token
        sequence is its own hypothesis.

    ``decoder(logits, logits_len=None)`` returns ``hyps[b]``, a best-first list of
    :class:`Hypothesis`. Words are scored when they end: at a delimiter, at the start
    of the next word (SentencePiece), or at the end of the utterance, followed by
    ``</s>``. The language model's tables move to the logits' device on first use.
    """

    def __init__(self, tokens: Sequence[str], *, blank: int = 0, word_delimiter: str = "|",
                 lm=None, lm_weight: float = 0.5, word_score: float = 0.0, hotwords=None,
                 hotword_weight: float = 10.0, beam_size: int = 32, nbest: int = 1,
                 token_min_logp: float | None | str = "auto",
                 beam_threshold: float | None | str = "auto",
                 partial_oov: float = DEFAULT_PARTIAL_OOV, unk_score: float = DEFAULT_UNK_SCORE,
                 distinct_texts: bool = True, lexicon=None, token_lm=None,
                 token_lm_weight: float = 0.5):
        tokens = list(tokens)
        if not tokens or not all(isinstance(t, str) for t in tokens):
            raise TypeError("tokens must be a non-empty sequence of strings, one per class id")
        seq_loss_util._check_class_id(blank, "blank", len(tokens))
        if not isinstance(word_delimiter, str) or not word_delimiter:
            raise ValueError(f"word_delimiter must be a token string, got {word_delimiter!r}")
        if word_delimiter != "\u2581" and word_delimiter not in tokens:
            raise ValueError(f"word_delimiter {word_delimiter!r} is not in the vocabulary "
                             "(use '\u2581' for SentencePiece vocabularies)")
        if isinstance(hotwords, str):
            hotwords = [hotwords]
        for name, value in (("lm_weight", lm_weight), ("word_score", word_score),
                            ("hotword_weight", hotword_weight), ("partial_oov", partial_oov),
                            ("unk_score", unk_score)):
            if not isinstance(value, (int, float)) or not (
                    math.isfinite(value) or (name == "unk_score" and value == -math.inf)):
                allowed = " or -inf" if name == "unk_score" else ""
                raise ValueError(f"{name} must be a finite number{allowed}, got {value!r}")
        if partial_oov > 0:
            raise ValueError(f"partial_oov is a penalty: it must be <= 0, got {partial_oov!r}")
        if unk_score > 0:
            warnings.warn(f"unk_score={unk_score!r} is positive: every word the language model "
                          "does not know scores higher than it would as a known one, so the "
                          "search favours misspellings. It is a penalty, usually -5 to -25.",
                          stacklevel=2)
        for name, pruning in (("token_min_logp", token_min_logp),
                              ("beam_threshold", beam_threshold)):
            if isinstance(pruning, str) and pruning != "auto":
                raise ValueError(f"{name} must be a finite number, None or 'auto', got "
                                 f"{pruning!r}")
        _check_options(beam_size, nbest, *[None if isinstance(v, str) else v
                                           for v in (token_min_logp, beam_threshold)])
        if lm is not None and not isinstance(lm, NgramLM):
            if not isinstance(lm, (str, os.PathLike)):
                raise TypeError(f"lm must be a path to an ARPA file or an NgramLM, got "
                                f"{type(lm).__name__}")
            lm = NgramLM(lm)
        lexicon = _read_lexicon(lexicon, lm, [t for i, t in enumerate(tokens) if i != blank],
                                word_delimiter)
        token_lm = _read_token_lm(token_lm, token_lm_weight, tokens, blank)
        if unk_score == -math.inf and lexicon is None and lm is None:
            raise ValueError("unk_score=-inf allows only known words: it needs a lexicon or a "
                             "language model")
        # "auto": pruning where there is a language model; none (the exact search)
        # where there is not. The threshold is widened by what completing an unknown
        # word costs: unk_score where finite (-inf: none completes), the LM's <unk>
        # (which a lexicon word outside the LM also gets).
        if isinstance(token_min_logp, str):
            token_min_logp = LM_TOKEN_MIN_LOGP if lm is not None or token_lm is not None \
                else None
        # Only lexicon words (unk_score -inf): no threshold. A prefix of a lexicon word
        # ranks as though it will complete, and at the end some never do: with one, 3 of
        # the benchmark's 60 utterances kept no hypothesis that could end.
        if isinstance(beam_threshold, str):
            charged = lm_weight * float(lm._unk_prob()) + unk_score if lm is not None else 0.0
            beam_threshold = None if lm is None and token_lm is None else \
                LM_BEAM_THRESHOLD + max(0.0, -charged)
            if beam_threshold is not None and not math.isfinite(beam_threshold):
                beam_threshold = None  # unk_score -inf, or an LM without <unk>
        self.tokens, self.blank, self.word_delimiter = tokens, int(blank), word_delimiter
        self.lm, self.lm_weight, self.word_score = lm, lm_weight, word_score
        self.hotwords, self.hotword_weight = list(hotwords or []), hotword_weight
        self.beam_size, self.nbest = int(beam_size), int(nbest)
        self.token_min_logp, self.beam_threshold = token_min_logp, beam_threshold
        if not isinstance(distinct_texts, bool):
            raise TypeError(f"distinct_texts must be True or False, got {distinct_texts!r}")
        self.partial_oov, self.unk_score = float(partial_oov), float(unk_score)
        self.distinct_texts = distinct_texts
        self._words: dict = {}
        self.lexicon = lexicon
        self.token_lm, self.token_lm_weight = token_lm, float(token_lm_weight)
        known = _known_words(lm, self.hotwords, lexicon)
        self._known = set(known) if known is not None else None
        # Per token: does it start a word, and the text it adds (split_words' table).
        if word_delimiter == "\u2581":
            self._pieces = [(t.startswith("\u2581"), t[1:] if t.startswith("\u2581") else t)
                            for t in tokens]
        else:
            self._pieces = [(t == word_delimiter, "" if t == word_delimiter else t)
                            for t in tokens]

    @classmethod
    def from_hf(cls, processor_or_tokenizer, **options) -> CtcBeamSearchDecoder:
        """A decoder over a Hugging Face CTC tokenizer's vocabulary (or a processor's):
        the tokens in id order, the pad token as the blank, and its word delimiter
        (``"|"`` for wav2vec2; ``"\u2581"`` where it has none). ``options`` override
        any of them and set the rest."""
        tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)
        if not hasattr(tokenizer, "get_vocab"):
            raise TypeError("from_hf needs a Hugging Face tokenizer or a processor holding "
                            f"one, got {type(processor_or_tokenizer).__name__}")
        vocab = tokenizer.get_vocab()
        size = max(vocab.values()) + 1
        by_id: list[str | None] = [None] * size
        for token, index in vocab.items():
            by_id[index] = token
        missing = [i for i, t in enumerate(by_id) if t is None]
        if missing:
            raise ValueError(f"the tokenizer's vocabulary has no token for ids {missing[:5]}")
        tokens = [t for t in by_id if t is not None]
        options.setdefault("blank", tokenizer.pad_token_id if tokenizer.pad_token_id
                           is not None else 0)
        delimiter = getattr(tokenizer, "word_delimiter_token", None)
        options.setdefault("word_delimiter", delimiter if delimiter in vocab else "\u2581")
        return cls(tokens, **options)

    def __repr__(self) -> str:
        extras = "".join(
            [f", token_lm={self.token_lm!r}" if self.token_lm is not None else "",
             f", lexicon=({len(self.lexicon)} words)" if self.lexicon is not None else ""])
        return (f"CtcBeamSearchDecoder({len(self.tokens)} tokens, blank={self.blank}, "
                f"word_delimiter={self.word_delimiter!r}, lm={self.lm!r}{extras}, "
                f"beam_size={self.beam_size}, nbest={self.nbest}, "
                f"token_min_logp={self.token_min_logp}, beam_threshold={self.beam_threshold})")

    def _words_on(self, device) -> _Words:
        key = str(device)
        if key not in self._words:
            self._words[key] = _Words(self.tokens, self.word_delimiter, self.lm, self.hotwords,
                                      self.lm_weight, self.word_score, self.hotword_weight,
                                      self.partial_oov, self.unk_score, device, self.lexicon,
                                      self.token_lm, self.token_lm_weight)
        return self._words[key]

    def unknown_cost(self, words: Sequence[str]) -> float:
        """What ``words`` pay for being unknown (a hypothesis's ``unk_score``): for each
        one outside the lexicon (or the LM's vocabulary) and the hotwords, ``unk_score``,
        plus ``partial_oov`` per 6 characters past its sixth. 0 without either."""
        if self._known is None:
            return 0.0
        return sum(self.unk_score + self.partial_oov * max(0.0, len(w) / PARTIAL_OOV_CHARS - 1)
                   for w in words if w not in self._known)

    def split_words(self, tokens: Sequence[int]) -> tuple[list, list]:
        """The words that ``tokens`` spell, and each one's token positions
        ``(first, last)``."""
        words: list[str] = []
        spans: list[tuple[int, int]] = []
        current, first = "", 0
        pieces = self._pieces
        for i, token in enumerate(tokens):
            starts, text = pieces[token]
            if starts and current:
                words.append(current)
                spans.append((first, i - 1))
                current = ""
            if text:
                if not current:
                    first = i
                current += text
        if current:
            words.append(current)
            spans.append((first, len(tokens) - 1))
        return words, spans

    def __call__(self, logits: torch.Tensor, logits_len: torch.Tensor | None = None) -> list:
        logits, logits_len = _check_logits(logits, logits_len, self.blank)
        if logits.shape[2] != len(self.tokens):
            raise ValueError(f"logits have C={logits.shape[2]} classes but the vocabulary "
                             f"has {len(self.tokens)} tokens: they must be the same")
        if logits.shape[2] < 2:
            raise ValueError("logits need a class besides the blank (C >= 2)")
        words = self._words_on(_search_device(logits.device))
        # Distinct texts: every hypothesis the beam holds at the end, then the first
        # (best) of each text.
        wanted = self.beam_size if self.distinct_texts and self.nbest > 1 else self.nbest
        with torch.no_grad():
            found = _search(_log_probs(logits, logits_len), logits_len, self.blank,
                            self.beam_size, wanted, words, self.token_min_logp,
                            self.beam_threshold)
        out = []
        for hyps in found:
            decoded: list[Hypothesis] = []
            texts: set[str] = set()
            for tokens, times, score, acoustic, lm, tlm in hyps:
                if len(decoded) == self.nbest:
                    break
                spelled, spans = self.split_words(tokens)
                if self.distinct_texts:
                    text = " ".join(spelled)
                    if text in texts:
                        continue
                    texts.add(text)
                word_spans = [(times[a], times[z] + 1) for a, z in spans]
                decoded.append(Hypothesis(tokens, spelled, " ".join(spelled), score, acoustic,
                                          lm, times, word_spans, self.unknown_cost(spelled),
                                          tlm))
            out.append(decoded)
        return out
