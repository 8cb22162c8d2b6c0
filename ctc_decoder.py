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
* ``decoder.stream(batch)``, :func:`ctc_beam_search_stream` and :func:`greedy_stream`:
  the same searches over logits that arrive in chunks (:mod:`ctc_stream`), with partial
  results, ending with exactly the offline result.

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
by its launches (about 117 a frame), so the host kernel is the faster of the two there
too. Every part of a prefix's score beyond the acoustic one (the word LM, the word
bonus, hotwords, unknown words, the token LM, a caller's own) is a scorer
(:mod:`ctc_scorers`), which both searches call at the same events. A hypothesis is a
token sequence: two tokenisations of one text are two
hypotheses, except in ``CtcBeamSearchDecoder``'s n-best, which by default keeps each
text once, as its best spelling.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import NamedTuple, NoReturn
from collections.abc import Sequence

import numpy as np
import torch

import seq_loss_util
from ctc_scorers import (PARTIAL_OOV_CHARS, HotwordScorer, Scorer, TokenLMScorer, TokenScorer,
                         UnknownWordScorer, WordBonusScorer, WordEvent, WordLMScorer,
                         WordScorer)
from ctc_scorers.base import c_kernel, lm_tables, mix
from ctc_scorers.unknown_words import unknown_word_cost
from ngram_lm import NgramLM, hash_parts

__all__ = ["greedy_decode", "ctc_beam_search", "CtcBeamSearchDecoder", "Hypothesis",
           "ctc_beam_search_stream", "greedy_stream"]


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
    ``scores``: the totals of the decoder's own ``scorers`` that name a ``field``, by
    that name (``score`` holds what each added).
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
    scores: dict = {}  # every search passes a dict of its own


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
def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where the beam mask ``(B, K)`` holds, else ``b``: tensors ``(B, K, ...)``."""
    return torch.where(mask.reshape(*mask.shape, *[1] * (a.dim() - mask.dim())), a, b)


class _Words:
    """What the search knows about words, as tensors on one device: each token's
    characters (hash parts) and whether it ends or starts a word; and the scorers it
    calls (:mod:`ctc_scorers`): the word scorers as a prefix completes a word, the token
    scorers as it appends a token. It keeps every prefix's unfinished word (the hash and
    length of its characters) and, for word scorers that read them (hotword phrases),
    the hashes of the words before it.

    The search's state is one flat dict of ``(B, K, ...)`` tensors, so that it is
    gathered and masked as one: ``partial_hash``, ``partial_len``, ``recent``, and each
    scorer's own entries as ``"{i}.{name}"``, ``i`` its place in ``scorers``."""

    def __init__(self, tokens: Sequence[str], delimiter: str | None, device,
                 word_scorers: Sequence[WordScorer] = (),
                 token_scorers: Sequence[TokenScorer] = ()):
        self.prefix_mode = delimiter == "\u2581"
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
        self.word_scorers, self.token_scorers = list(word_scorers), list(token_scorers)
        self.scorers: list[Scorer] = [*self.word_scorers, *self.token_scorers]
        self.context = max((s.context_words for s in self.word_scorers), default=0)
        self._arrays: dict | None = None  # the C kernel's view, made on first use

    def find(self, kind: type) -> Scorer | None:
        """The first scorer of type ``kind``, or None."""
        return next((s for s in self.scorers if isinstance(s, kind)), None)

    @staticmethod
    def _part(state: dict, i: int) -> dict:
        prefix = f"{i}."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    @staticmethod
    def _put(state: dict, i: int, part: dict) -> None:
        state.update({f"{i}.{k}": v for k, v in part.items()})

    def start(self, batch, beam, device, dtype) -> dict:
        state = dict(partial_hash=torch.zeros(batch, beam, dtype=torch.long, device=device),
                     partial_len=torch.zeros(batch, beam, dtype=torch.long, device=device))
        if self.context:
            state["recent"] = torch.zeros(batch, beam, self.context, dtype=torch.long,
                                          device=device)
        for i, scorer in enumerate(self.scorers):
            self._put(state, i, scorer.start(batch, beam, device, dtype))
        return state

    def completion(self, state, dtype) -> tuple[torch.Tensor, dict]:
        """Per beam ``(B, K)``: what completing its unfinished word now adds to its score
        (0 where it has none), and the word scorers' states after it."""
        has_word = state["partial_len"] > 0
        word = WordEvent(state["partial_hash"], state["partial_len"], state.get("recent"))
        delta = torch.zeros(has_word.shape, dtype=dtype, device=has_word.device)
        closed: dict = {}
        for i, scorer in enumerate(self.word_scorers):
            add, after = scorer.close(self._part(state, i), word)
            delta = delta + add.to(dtype)
            self._put(closed, i, after)
        return torch.where(has_word, delta, 0.0), closed

    def extra(self, state, dtype) -> torch.Tensor:
        """The non-acoustic part of each beam's score so far ``(B, K)``."""
        extra = torch.zeros(state["partial_len"].shape, dtype=dtype,
                            device=state["partial_len"].device)
        for i, scorer in enumerate(self.scorers):
            extra = extra + scorer.weighted(self._part(state, i)).to(dtype)
        return extra

    def penalty(self, partial_hash, partial_len) -> torch.Tensor | None:
        """The word scorers' rank-only terms for unfinished words (float64), or None."""
        word = WordEvent(partial_hash, partial_len)
        total = None
        for scorer in self.word_scorers:
            term = scorer.partial(word)
            if term is not None:
                total = term if total is None else total + term
        return total

    def token_step(self, state, cand_tok: torch.Tensor, dtype) -> torch.Tensor | None:
        """``(B, K, V)``: what the token scorers add for each candidate token, or None."""
        total = None
        for j, scorer in enumerate(self.token_scorers):
            term = scorer.step(self._part(state, len(self.word_scorers) + j),
                               cand_tok).to(dtype)
            total = term if total is None else total + term
        return total

    def advance(self, state, src, token, appended, closed):
        """The state of the selected candidates: gathered from their beams ``src``; for
        each appended token, the word it completes (the word scorers' ``closed`` states),
        the token scorers' step, and the characters it adds to the unfinished word."""
        new = {k: _take(v, src) for k, v in state.items()}
        tok = token.clamp(min=0)
        ends = appended & self.boundary[tok] & (new["partial_len"] > 0)
        for k, v in closed.items():
            new[k] = _where(ends, _take(v, src), new[k])
        if self.context:
            shifted = torch.cat([new["recent"][..., 1:], new["partial_hash"][..., None]], -1)
            new["recent"] = torch.where(ends[..., None], shifted, new["recent"])
        for j, scorer in enumerate(self.token_scorers):
            i = len(self.word_scorers) + j
            before = self._part(new, i)
            after = scorer.append(before, tok)
            self._put(new, i, {k: _where(appended, after[k], v) for k, v in before.items()})
        # A boundary token starts a new word: empty (a delimiter) or its own characters.
        start = appended & self.boundary[tok]
        base_hash = torch.where(start, 0, new["partial_hash"])
        base_len = torch.where(start, 0, new["partial_len"])
        grown = base_hash * self.char_power[tok] + self.char_hash[tok]
        new["partial_hash"] = torch.where(appended, grown, new["partial_hash"])
        new["partial_len"] = torch.where(appended, base_len + self.char_len[tok],
                                         new["partial_len"])
        return new

    def finish(self, state, dtype) -> tuple[torch.Tensor, dict]:
        """Per beam: what ending here adds to the score (its last word, then each
        scorer's end), and each reporting scorer's total by field (``lm_score``...)."""
        has_word = state["partial_len"] > 0
        end, closed = self.completion(state, dtype)
        totals: dict = {}
        for i, scorer in enumerate(self.scorers):
            part = self._part(state, i)
            if i < len(self.word_scorers):
                after = self._part(closed, i)
                part = {k: _where(has_word, after[k], v) for k, v in part.items()}
            add, part = scorer.end(part)
            end = end + add.to(dtype)
            if scorer.field is not None:
                total = scorer.total(part)
                totals[scorer.field] = totals[scorer.field] + total \
                    if scorer.field in totals else total
        return end, totals

    def arrays(self) -> dict | None:
        """These tables as the C kernel takes them (CPU tensors), made once; None where
        a scorer has no C implementation (the search then runs as tensor operations)."""
        if self._arrays is None:
            fields = self._kernel_defaults()
            for scorer in self.scorers:
                own = scorer.kernel_fields(self)
                if own is None:
                    self._arrays = {}
                    break
                fields.update(own)
            else:
                self._arrays = fields
        return self._arrays or None

    def _kernel_defaults(self) -> dict:
        """The C kernel's fields with no scorer: each scorer's kernel_fields replaces
        its own."""
        empty = torch.zeros(0, dtype=torch.long)
        return dict(char_hash=self.char_hash.cpu().contiguous(),
                    char_power=self.char_power.cpu().contiguous(),
                    char_len=self.char_len.cpu().contiguous(),
                    boundary=self.boundary.cpu().to(torch.uint8).contiguous(),
                    prefix_mode=self.prefix_mode, lm=lm_tables(None), lm_weight=0.0,
                    lm_max=0.0, word_score=0.0, hotword_weight=0.0, phrases=empty,
                    phrase_len=0, partial_oov=0.0, unk_score=0.0,
                    partial_chars=float(PARTIAL_OOV_CHARS), prefixes=empty, words=empty,
                    children=(empty, torch.zeros(1, dtype=torch.long), empty),
                    token_lm=lm_tables(None), tlm_weight=0.0, tlm_max=0.0,
                    tlm_ids=torch.zeros(self.char_len.numel(), dtype=torch.long))


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, k], ...]``: the rows of beam tensors ``(B, K, ...)`` picked by
    ``index`` ``(B, K')``."""
    if x.dim() == 2:
        return x.gather(1, index)
    return x.gather(1, index[..., None].expand(*index.shape, x.shape[-1]))


_kernel = c_kernel  # the compiled C search, or None (ctc_scorers.base.c_kernel)


def _search_device(device) -> torch.device:
    """Where the search runs for tensors on ``device``: the host wherever the C kernel
    is built, CUDA tensors included (their log-probabilities are copied over once),
    else ``device`` (tensor operations). On a GPU the tensor search is bound by
    launches: counted by a dispatch mode at beam 8, it issues 117 ATen ops a frame (161
    with a vocabulary, 335 with a word LM), some hundreds of milliseconds for 500 frames, where the kernel takes
    about 15 ms on two CPU cores for the same batch of 32."""
    return torch.device("cpu") if _kernel() is not None else torch.device(device)


# What a hypothesis tuple reports after (tokens, timesteps, score, acoustic): the
# scorers' totals by field, 0 where no scorer reports one.
_REPORTED = ("lm_score", "token_lm_score", "unk_score")


def _kernel_and_tables(words: _Words | None):
    """``(kernel, arrays)``: the C search and the word tables it takes (None without
    words), or ``(None, None)`` where the tensor search runs instead (no kernel, or a
    scorer the kernel does not implement)."""
    kernel = _kernel()
    arrays = words.arrays() if kernel is not None and words is not None else None
    if kernel is None or (words is not None and arrays is None):
        return None, None
    return kernel, arrays


def _candidates(beam: int, classes: int) -> int:
    """Candidate tokens a frame: the beam + 1 most probable non-blank ones (a token
    outside them cannot make a prefix the beam would keep)."""
    return min(beam + 1, classes - 1)


def _kernel_limits(token_min_logp, beam_threshold) -> tuple[float, float]:
    """The kernel's token_min_logp and beam_threshold, None meaning no limit."""
    return (-math.inf if token_min_logp is None else float(token_min_logp),
            math.inf if beam_threshold is None else float(beam_threshold))


def _padded_frames_zeroed(log_probs, logits_len):
    """``log_probs`` with every frame past its example's length 0, for the tensor
    search, which reads every frame (padding may hold NaN)."""
    frames = torch.arange(log_probs.shape[1], device=log_probs.device)
    return log_probs.masked_fill((frames[None, :] >= logits_len[:, None])[:, :, None],
                                 0.0), logits_len


def _plain_hypotheses(hyps) -> list:
    """One example's search tuples as :class:`Hypothesis` objects without a vocabulary
    (``ctc_beam_search``'s)."""
    return [Hypothesis(tokens, [], "", score, acoustic, 0.0, times, [], 0.0, 0.0, {})
            for tokens, times, score, acoustic, *_ in hyps]


def _search(log_probs, logits_len, blank: int, beam: int, nbest: int, words: _Words | None,
            token_min_logp: float | None, beam_threshold: float | None):
    """The batched prefix beam search: the C kernel where it is built (on the host,
    see _search_device) and implements every scorer, else tensor operations (on the
    words' device). ``words`` must be on the search's device. Returns, on the host, per
    example the ``nbest`` (or fewer) hypotheses as ``(tokens, timesteps, score,
    acoustic, lm, token_lm, unk, others)`` tuples, best first, ``others`` the totals of
    scorers reporting another field (``{}`` from the C kernel, which runs none)."""
    if not log_probs.shape[0]:  # an empty batch: no reshape can infer a size from it
        return []
    kernel, arrays = _kernel_and_tables(words)
    if kernel is None:
        device = words.boundary.device if words is not None else log_probs.device
        log_probs, logits_len = _padded_frames_zeroed(log_probs.to(device),
                                                      logits_len.to(device))
        return _search_tensors(log_probs, logits_len, blank, beam, nbest, words,
                               token_min_logp, beam_threshold)
    log_probs, logits_len = log_probs.cpu().contiguous(), logits_len.cpu().contiguous()
    count, tokens, times, lengths, *scores = kernel.beam_search(
        log_probs, logits_len, blank, beam, _candidates(beam, log_probs.shape[2]), nbest,
        *_kernel_limits(token_min_logp, beam_threshold), arrays)
    return [[(tokens[b, n, :lengths[b, n]].tolist(), times[b, n, :lengths[b, n]].tolist(),
              *(float(x[b, n]) for x in scores), {})
             for n in range(count[b])] for b in range(len(count))]


def _search_tensors(log_probs, logits_len, blank: int, beam: int, nbest: int,
                    words: _Words | None, token_min_logp: float | None,
                    beam_threshold: float | None):
    """The search as tensor operations over ``(B, K, V)``, one loop over frames, on the
    tensors' device (where the C kernel is not built); the C kernel computes the
    same."""
    search = _TensorSearch(log_probs.shape[0], log_probs.shape[2], blank, beam, words,
                           token_min_logp, beam_threshold, log_probs.device, log_probs.dtype)
    search.run(log_probs, logits_len)
    return search.finish(nbest)


class _TensorSearch:
    """The tensor search's beams between frames, so that frames may come in chunks
    (:mod:`ctc_stream`): ``run`` searches a chunk, ``finish`` ranks the end. The
    history is kept on the host, a chunk's read once."""

    def __init__(self, batch: int, classes: int, blank: int, beam: int,
                 words: _Words | None, token_min_logp: float | None,
                 beam_threshold: float | None, device, dtype):
        self.batch, self.classes, self.blank, self.beam = batch, classes, blank, beam
        self.words, self.token_min_logp = words, token_min_logp
        self.beam_threshold, self.device, self.dtype = beam_threshold, device, dtype
        # Candidate tokens per frame: the K + 1 most probable non-blank ones. A token
        # outside them cannot make a prefix the beam would keep: from its own beam alone,
        # K others score at least as much. (Merges into prefixes already in the beam are
        # made for every token, below.) The word boundary always competes: the LM and word
        # scores change its rank.
        width = _candidates(beam, classes)
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
        priority = torch.zeros(classes, dtype=dtype, device=device)
        priority[blank] = -math.inf  # the blank is never appended
        if words is not None and not words.prefix_mode and width < classes - 1:
            priority = torch.where(words.boundary & (priority == 0), math.inf, priority)

        self.back_src: list = []  # per chunk: (t, B, K) slot at the frame before
        self.back_tok: list = []  # per chunk: (t, B, K) token emitted, or -1
        self.times: list = []  # per chunk: (t, B) each example's frame, -1 where padded
        self.seen = np.zeros(batch, dtype=np.int64)  # frames searched per example
        self.width, self.neg, self.slots, self.priority = width, neg, slots, priority
        # What each frame carries to the next (run reads and writes them back).
        self.pb, self.pnb, self.length, self.last = pb, pnb, length, last
        self.hashes, self.parent, self.state = hashes, parent, state

    def run(self, log_probs, logits_len) -> None:
        """Searches the first ``logits_len[b]`` frames of each example's chunk
        ``log_probs`` (B, t, C) (on the search's device)."""
        batch, frames = self.batch, log_probs.shape[1]
        blank, beam, words = self.blank, self.beam, self.words
        token_min_logp, beam_threshold = self.token_min_logp, self.beam_threshold
        device, dtype, classes = self.device, self.dtype, self.classes
        width, neg, slots, priority = self.width, self.neg, self.slots, self.priority
        pb, pnb, length, last = self.pb, self.pnb, self.length, self.last
        hashes, parent, state = self.hashes, self.parent, self.state
        back_src = torch.empty(frames, batch, beam, dtype=torch.long, device=device)
        back_tok = torch.empty(frames, batch, beam, dtype=torch.long, device=device)
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
                delta, closed = words.completion(state, dtype)
                extra = words.extra(state, dtype)
                rank_stay = stay + extra
                penalty = words.penalty(state["partial_hash"], state["partial_len"])
                if penalty is not None:
                    rank_stay = rank_stay + penalty.to(dtype)
                ends = words.boundary[cand_tok][:, None, :]  # (B, 1, V): completes a word
                rank_ext = ext + extra[:, :, None]
                step = words.token_step(state, cand_tok, dtype)  # the token scorers' terms
                if step is not None:
                    rank_ext = rank_ext + step
                rank_ext = rank_ext + torch.where(ends, delta[:, :, None], 0.0)
                # The word each extension leaves unfinished, for the same rank terms.
                base_hash = torch.where(ends, 0, state["partial_hash"][:, :, None])
                base_len = torch.where(ends, 0, state["partial_len"][:, :, None])
                new_hash = (base_hash * words.char_power[cand_tok][:, None, :]
                            + words.char_hash[cand_tok][:, None, :])
                new_len = base_len + words.char_len[cand_tok][:, None, :]
                penalty = words.penalty(new_hash, new_len)
                if penalty is not None:
                    rank_ext = rank_ext + penalty.to(dtype)
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
            new_hash = torch.where(appended, mix(src_hash, token), src_hash)
            new_parent = torch.where(appended, src_hash, parent.gather(1, src))
            new_length = length.gather(1, src) + appended.long()
            # The history: where each slot came from, and the token it appended at t (a
            # prefix whose parent's path was the more probable takes the parent's history).
            via = ~appended & parent_wins.gather(1, src)
            hist_src = torch.where(via, pidx.gather(1, src), src)
            hist_tok = torch.where(appended, token, torch.where(via, src_last, -1))
            if words is not None:
                new_state = words.advance(state, src, token, appended, closed)

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

        self.pb, self.pnb, self.length, self.last = pb, pnb, length, last
        self.hashes, self.parent, self.state = hashes, parent, state
        self.back_src.append(back_src.cpu().numpy())
        self.back_tok.append(back_tok.cpu().numpy())
        lengths = logits_len.cpu().numpy()
        rows = np.arange(frames)[:, None]
        self.times.append(np.where(rows < lengths[None, :], self.seen[None, :] + rows, -1))
        self.seen = self.seen + np.minimum(lengths, frames)

    def rows(self) -> int:
        """History rows held (frames of the longest chunks so far, summed)."""
        return sum(x.shape[0] for x in self.back_src)

    def reset(self, b: int) -> None:
        """Example b back at the empty prefix (its history before now is ignored:
        ``start_row``)."""
        device, dtype = self.device, self.dtype
        self.pb[b] = -math.inf
        self.pb[b, 0] = 0.0
        self.pnb[b] = -math.inf
        self.length[b], self.last[b], self.hashes[b], self.parent[b] = 0, -1, 0, 0
        if self.words is not None:
            fresh = self.words.start(1, self.beam, device, dtype)
            for key, value in self.state.items():
                value[b] = fresh[key][0]
        self.seen[b] = 0

    def _history(self):
        batch, beam = self.batch, self.beam
        if not self.back_src:
            empty = np.zeros((0, batch, beam), np.int64)
            return empty, empty, np.zeros((0, batch), np.int64)
        return (np.concatenate(self.back_src), np.concatenate(self.back_tok),
                np.concatenate(self.times))

    def best_paths(self, start_row) -> list:
        """Each example's best beam now (slot 0): ``(tokens, frames)``, from its
        ``start_row`` (B,) on. One walk back through the history for the batch."""
        src, tok, times = self._history()
        batch = self.batch
        rows, slot = np.arange(batch), np.zeros(batch, dtype=np.int64)
        emitted = np.full((src.shape[0], batch), -1, dtype=np.int64)
        for r in range(src.shape[0] - 1, -1, -1):
            emitted[r] = tok[r, rows, slot]
            slot = src[r, rows, slot]
        emitted[np.arange(src.shape[0])[:, None] < np.asarray(start_row)[None, :]] = -1
        # No beam left (every path ruled out): no hypothesis, as the offline search.
        dead = ~(self.pb[:, 0].isfinite() | self.pnb[:, 0].isfinite()).cpu().numpy()
        emitted[:, dead] = -1
        out = []
        for b in range(batch):
            at = np.nonzero(emitted[:, b] >= 0)[0]
            out.append((emitted[at, b].tolist(), times[at, b].tolist()))
        return out

    def finish(self, nbest: int, start_row=None) -> list:
        """Per example, the ``nbest`` (or fewer) hypotheses as ``_search``'s tuples
        (``start_row`` (B,): the first history row of each example's utterance)."""
        batch, words, dtype = self.batch, self.words, self.dtype
        pb, pnb, state, neg = self.pb, self.pnb, self.state, self.neg
        acoustic = torch.logaddexp(pb, pnb)  # (B, K)
        final = acoustic
        totals: dict = {}
        if words is not None:
            end, totals = words.finish(state, dtype)
            final = acoustic + words.extra(state, dtype) + end
        final = torch.where(acoustic.isfinite(), final, neg)
        best = torch.sort(final, dim=1, descending=True, stable=True)[1][:, :nbest]  # (B, N)
        reported = [totals.pop(f, torch.zeros_like(acoustic)) for f in _REPORTED]
        others = list(totals)  # the fields of scorers given to the decoder
        picked = [x.gather(1, best) for x in (final, acoustic, *reported,
                                              *(totals[f] for f in others))]
        # One read back to the host, then the histories are followed on it.
        src_np, tok_np, time_np = self._history()
        frames = src_np.shape[0]
        best_np = best.cpu().numpy()
        final_np, acoustic_np, *reported_np = (x.cpu().numpy() for x in picked)
        others_np = reported_np[len(_REPORTED):]
        reported_np = reported_np[:len(_REPORTED)]
        slot = best_np.copy()
        rows = np.arange(batch)[:, None]
        emitted = np.full((frames, batch, slot.shape[1]), -1, dtype=np.int64)
        for t in range(frames - 1, -1, -1):
            emitted[t] = tok_np[t][rows, slot]
            slot = src_np[t][rows, slot]
        if start_row is not None:  # rows before an example's reset belong to another
            emitted[np.arange(frames)[:, None] < np.asarray(start_row)[None, :]] = -1
        results = []
        for b in range(batch):
            hyps = []
            for n in range(best_np.shape[1]):
                if not np.isfinite(final_np[b, n]):
                    continue
                rows_at = np.nonzero(emitted[:, b, n] >= 0)[0]
                hyps.append((emitted[rows_at, b, n].tolist(), time_np[rows_at, b].tolist(),
                             float(final_np[b, n]), float(acoustic_np[b, n]),
                             *(float(x[b, n]) for x in reported_np),
                             {f: float(x[b, n]) for f, x in zip(others, others_np, strict=True)}))
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


def _check_finite_frames(log_probs: torch.Tensor, logits_len: torch.Tensor,
                         first_frame=None) -> None:
    """Raises when a valid frame's log-probabilities hold NaN: logits with NaN or +inf,
    or a frame whose logits are all -inf. Such a model has diverged; a search over it
    would return NaN scores and hypotheses cut short there. One host read.
    ``first_frame`` (B,): each example's frame index of the first frame here (a
    stream's chunk), so the message counts from the utterance's start."""
    if not log_probs.numel():
        return
    bad = seq_loss_util._first(seq_loss_util._bad_frames(log_probs, logits_len))
    if bad is not None:
        b, t = bad
        _raise_bad_frame(b, t, first_frame)


def _raise_bad_frame(b: int, t: int, first_frame=None) -> NoReturn:
    """The error for example b's bad frame t (counted from ``first_frame[b]``)."""
    t += 0 if first_frame is None else int(first_frame[b])
    raise ValueError(f"logits of example {b} at frame {t} hold NaN or +inf, or only -inf "
                     "(no class possible): the model has diverged, and no hypothesis "
                     "over such a frame means anything")


_BUILT_IN_FIELDS = (*_REPORTED, "score", "acoustic_score")


def _check_scorers(scorers) -> list:
    """A decoder's own ``scorers`` as a list, each a WordScorer or TokenScorer whose
    ``field`` (if any) is a name no other scorer and no Hypothesis field takes."""
    if isinstance(scorers, Scorer):
        scorers = [scorers]
    scorers = list(scorers)
    fields: set = set()
    for scorer in scorers:
        if not isinstance(scorer, (WordScorer, TokenScorer)):
            raise TypeError(f"scorers must be ctc_scorers.WordScorer or TokenScorer "
                            f"instances, got {type(scorer).__name__}")
        field = scorer.field
        if field is None:
            continue
        if not isinstance(field, str) or field in _BUILT_IN_FIELDS or field in fields:
            raise ValueError(f"scorer {type(scorer).__name__} reports as {field!r}: a "
                             "field must be a name of its own (not one of "
                             f"{_BUILT_IN_FIELDS} or another scorer's)")
        fields.add(field)
    return scorers


def _log_probs(logits, logits_len, compute=None, first_frame=None):
    """log_softmax in ``compute`` (None: float32, float64 for float64), after the
    check that no valid frame is bad (:func:`_check_finite_frames`; ``first_frame`` as
    there). Where the C kernel is built it computes them (on the host, where every
    search then runs), else torch on the logits' device. Padded frames are left as they
    are (a row's log_softmax reads that row alone): the C search never reads them, and
    the tensor search zeroes them where it starts (:func:`_padded_frames_zeroed`)."""
    if compute is None:
        compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    kernel = _kernel()
    if kernel is not None:
        log_probs, bad = kernel.decode_log_softmax(logits.cpu(), logits_len.cpu(), compute)
        if bad is not None:
            _raise_bad_frame(bad[0], bad[1], first_frame)
        return log_probs
    log_probs = torch.log_softmax(logits.detach().to(compute), dim=2)
    _check_finite_frames(log_probs, logits_len, first_frame)
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
    return [_plain_hypotheses(hyps) for hyps in found]


def ctc_beam_search_stream(batch: int, *, blank: int = 0, beam_size: int = 16, nbest: int = 1,
                           token_min_logp: float | None = None,
                           beam_threshold: float | None = None, horizon: int | None = None):
    """:func:`ctc_beam_search` over chunks of frames: a :class:`ctc_stream.BeamStream`
    of ``batch`` utterances (its ``finish`` gives what ``ctc_beam_search`` gives on the
    whole utterances)."""
    import ctc_stream

    return ctc_stream.BeamStream(batch, blank=blank, beam_size=beam_size, nbest=nbest,
                                 token_min_logp=token_min_logp, beam_threshold=beam_threshold,
                                 horizon=horizon)


def greedy_stream(batch: int, *, blank: int = 0):
    """:func:`greedy_decode` over chunks of frames: a :class:`ctc_stream.GreedyStream`
    of ``batch`` utterances."""
    import ctc_stream

    return ctc_stream.GreedyStream(batch, blank=blank)


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

      scorers: more scorers (:mod:`ctc_scorers`: a :class:`ctc_scorers.WordScorer` or
        :class:`ctc_scorers.TokenScorer` each), called beside the built-in ones; each
        adds its part to ``score`` and, where it names a ``field``, reports its total in
        ``Hypothesis.scores``. The C kernel runs only the built-in scorers: with one of
        these the search runs as tensor operations (on the host where the kernel is
        built), so their tensors arrive on that device.

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
                 token_lm_weight: float = 0.5, scorers: Sequence[Scorer] = ()):
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
        self.scorers = _check_scorers(scorers)
        self.partial_oov, self.unk_score = float(partial_oov), float(unk_score)
        self.distinct_texts = distinct_texts
        self._words: dict = {}
        self.lexicon = lexicon
        self.token_lm, self.token_lm_weight = token_lm, float(token_lm_weight)
        self._known = _known_words(lm, self.hotwords, lexicon)  # None: no word is unknown
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
             f", lexicon=({len(self.lexicon)} words)" if self.lexicon is not None else "",
             f", scorers={[type(s).__name__ for s in self.scorers]}" if self.scorers else ""])
        return (f"CtcBeamSearchDecoder({len(self.tokens)} tokens, blank={self.blank}, "
                f"word_delimiter={self.word_delimiter!r}, lm={self.lm!r}{extras}, "
                f"beam_size={self.beam_size}, nbest={self.nbest}, "
                f"token_min_logp={self.token_min_logp}, beam_threshold={self.beam_threshold})")

    def _words_on(self, device) -> _Words:
        key = str(device)
        if key not in self._words:
            self._words[key] = _Words(self.tokens, self.word_delimiter, device,
                                      *self._scorers(device))
        return self._words[key]

    def _scorers(self, device) -> tuple[list, list]:
        """The word and token scorers of this decoder's options, on ``device`` (in the
        order the C kernel's score sums them)."""
        word: list[WordScorer] = []
        if self.lm is not None:
            word.append(WordLMScorer(self.lm, self.lm_weight, device))
        if self.word_score:
            word.append(WordBonusScorer(self.word_score))
        if any(h.split() for h in self.hotwords):
            word.append(HotwordScorer(self.hotwords, self.hotword_weight, device))
        if self._known is not None:
            word.append(UnknownWordScorer(self._known, self.unk_score, self.partial_oov,
                                          device))
        token: list[TokenScorer] = []
        if self.token_lm is not None:
            token.append(TokenLMScorer(self.token_lm, self.tokens, self.token_lm_weight,
                                       device))
        word += [s for s in self.scorers if isinstance(s, WordScorer)]
        token += [s for s in self.scorers if isinstance(s, TokenScorer)]
        return word, token

    def unknown_cost(self, words: Sequence[str]) -> float:
        """What ``words`` would pay for being unknown (as a hypothesis's ``unk_score``):
        for each one outside the lexicon (or the LM's vocabulary) and the hotwords,
        ``unk_score``, plus ``partial_oov`` per 6 characters past its sixth. 0 without
        either."""
        if self._known is None:
            return 0.0
        known = set(self._known)
        return sum(float(unknown_word_cost(torch.tensor(len(w)), self.unk_score,
                                           self.partial_oov))
                   for w in words if w not in known)

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
        return [self._hypotheses(hyps) for hyps in found]

    def _hypotheses(self, hyps) -> list:
        """One example's search tuples as its n-best :class:`Hypothesis` list (words,
        spans, the best spelling of each text)."""
        decoded: list[Hypothesis] = []
        texts: set[str] = set()
        for tokens, times, score, acoustic, lm, tlm, unk, others in hyps:
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
                                      lm, times, word_spans, unk, tlm, others))
        return decoded

    def stream(self, batch: int, *, horizon: int | None = None):
        """A :class:`ctc_stream.BeamStream` of ``batch`` utterances with this decoder's
        options: ``feed`` chunks of logits as they arrive, ``partial`` the best
        hypothesis so far, ``finish`` what this decoder gives on the whole utterances.
        ``horizon`` (frames; None: none) bounds its memory: beams that left the best
        one's path more than that many frames back are dropped (see ctc_stream)."""
        import ctc_stream

        return ctc_stream.BeamStream(batch, decoder=self, horizon=horizon)
