"""Streaming CTC decoding: partial results while the frames arrive, and at the end
exactly what the offline decoder gives on the whole utterance.

A stream decodes a batch of B utterances whose logits come in chunks of any length:

    stream = decoder.stream(batch=B)           # a CtcBeamSearchDecoder's options
    stream.feed(logits, logits_len=None)       # (B, t, C), as often as audio arrives
    stream.partial()                           # per example: the best hypothesis now
    stream.finish()                            # per example: the n-best, as decoder(...)

:func:`ctc_decoder.ctc_beam_search_stream` and :func:`ctc_decoder.greedy_stream` do the
same for ``ctc_beam_search`` and ``greedy_decode``. ``logits_len[b]`` is how many of the
chunk's frames example b has (0: none this time, as for an utterance that has ended),
so examples of different lengths share a stream; ``finish(b)`` ends one, and ``reset(b)``
starts it again on a new utterance, so a server keeps one stream for many users.

Exactness: the search of a chunk is the offline search's own per-frame code (the C
kernel's, or the tensor search's) run on the beams the last chunk left, so the final
n-best equals the offline decoder's on the concatenated chunks, token for token and
frame for frame, whatever the chunk boundaries (``tests/test_stream.py`` checks random
splittings with the word LM, hotwords, a lexicon and a token LM).

Memory: the C kernel commits what every beam agrees on. After a chunk (at most once
every 32 frames, or a quarter of the history held) it walks the history back from the
live beams to the latest frame at whose end they all descend from one beam; the
tokens of that beam's path up to there begin every hypothesis the search can still
return, so they move to a committed list (two int64 a token) and the history of those
frames (two int32 per beam a frame) is freed for reuse. A stream then holds its beams,
the committed tokens, and the history since the beams last agreed: the back-pointers
of words not yet final. The tensor search (no compiler, or ``SEQ_LOSS_UTIL_KERNEL=0``)
keeps its whole history on the host.

Cost: a chunk is one kernel call (the log-softmax of its frames, then the search, on
torch's thread count: the calling thread and worker threads the kernel keeps, which
watch for the next chunk for 150 us before they sleep, so a chunk does not wait for a
thread to start); the kernel checks its lengths before it reads a frame, so the usual
chunk (a CPU tensor of the stream's dtype, int64 lengths) skips the decoders' checks
in Python, which run where the kernel refuses one and raise what is wrong. As a chunk
ends the kernel walks each example's best path while its history is in the cache;
partial() gets, in one call, each path's tokens from where it departs from the one it
last showed (the stream keeps each example's path) and its words spelled.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

import ctc_decoder as D

__all__ = ["Partial", "BeamStream", "GreedyStream"]


class Partial(NamedTuple):
    """An example's best hypothesis so far: ``tokens``, their ``timesteps`` (frame
    indices counted from the utterance's first frame), the ``words`` they spell and
    ``text``, the words joined by spaces (empty without a vocabulary). ``final``: how
    many of the leading tokens can no longer change (committed: every beam holds them;
    for greedy, all)."""
    tokens: list
    timesteps: list
    words: list
    text: str
    final: int = 0


_new = tuple.__new__
_NOTHING_SHOWN: tuple = ([], [], [], "", 0)


def _check_batch_size(logits: torch.Tensor, batch: int) -> None:
    if logits.shape[0] != batch:
        raise ValueError(f"this stream decodes a batch of {batch} examples, but the chunk's "
                         f"logits have {logits.shape[0]} (B, t, C): pass every example's "
                         "frames, with logits_len 0 for those that have none now")


class _Stream:
    """What both streams share: the batch, each example's frames and whether it is
    finished, and the checks of a chunk."""

    def __init__(self, batch: int, blank: int):
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive number of examples, got {batch!r}")
        self.batch, self.blank = int(batch), int(blank)
        self.classes: int | None = None
        self.frames = np.zeros(self.batch, dtype=np.int64)  # frames fed, per example
        self.finished = np.zeros(self.batch, dtype=bool)

    def _chunk(self, logits, logits_len):
        """The chunk's logits and lengths after the offline decoders' checks, and this
        stream's: its batch, its class count, no frames for a finished example."""
        logits, logits_len = D._check_logits(logits, logits_len, self.blank)
        _check_batch_size(logits, self.batch)
        if self.classes is None:
            self.classes = logits.shape[2]
        elif logits.shape[2] != self.classes:
            raise ValueError(f"this chunk's logits have C={logits.shape[2]} classes, but the "
                             f"stream's earlier chunks had {self.classes}: every chunk must "
                             "come from the same model")
        lengths = logits_len.cpu().numpy()
        done = np.nonzero(self.finished & (lengths > 0))[0]
        if done.size:
            b = int(done[0])
            raise ValueError(f"example {b} was finished (finish() or finish({b})) and cannot "
                             f"take more frames: call reset({b}) to start a new utterance "
                             "there, or give it logits_len 0")
        return logits, logits_len, lengths

    def _check_example(self, b) -> int:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not (
                0 <= b < self.batch):
            raise ValueError(f"example must be an index in [0, {self.batch - 1}], got {b!r}")
        return int(b)


class GreedyStream(_Stream):
    """:func:`ctc_decoder.greedy_decode` over chunks: the most probable class per frame,
    repeats collapsed across chunk boundaries too, blanks dropped. A token, once in a
    partial result, never changes: a run that continues into the next chunk is the same
    token, not a new one."""

    def __init__(self, batch: int, *, blank: int = 0):
        super().__init__(batch, blank)
        self.previous = torch.full((self.batch,), -1, dtype=torch.long)  # last frame's class
        self.found: list = []  # per chunk: (example, token, frame) arrays

    def feed(self, logits: torch.Tensor, logits_len: torch.Tensor | None = None) -> None:
        """The next ``(B, t, C)`` chunk; ``logits_len`` ``(B,)`` frames of it per example
        (None: all ``t``)."""
        logits, logits_len, lengths = self._chunk(logits, logits_len)
        if logits.shape[1] == 0:
            return
        with torch.no_grad():
            best = logits.detach().argmax(dim=2).cpu()  # (B, t)
            frames = best.shape[1]
            before = torch.cat([self.previous[:, None], best[:, :-1]], dim=1)
            ok = torch.arange(frames)[None, :] < torch.from_numpy(lengths)[:, None]
            keep = ok & (best != self.blank) & (best != before)
            example, frame = keep.nonzero(as_tuple=True)
            self.found.append((example.numpy(), best[keep].numpy(),
                               self.frames[example.numpy()] + frame.numpy()))
            has = torch.from_numpy(lengths > 0)
            last = best.gather(1, (torch.from_numpy(lengths) - 1).clamp(min=0)[:, None])[:, 0]
            self.previous = torch.where(has, last, self.previous)
        self.frames += lengths

    def _paths(self) -> list:
        if not self.found:
            return [([], []) for _ in range(self.batch)]
        example, token, frame = (np.concatenate(x) for x in zip(*self.found, strict=True))
        order = np.argsort(example, kind="stable")  # chunks in order within each example
        example, token, frame = example[order], token[order], frame[order]
        cuts = np.searchsorted(example, np.arange(1, self.batch))
        return [(t.tolist(), f.tolist()) for t, f in
                zip(np.split(token, cuts), np.split(frame, cuts), strict=True)]

    def partial(self) -> list:
        """Per example, a :class:`Partial` of the tokens so far (no words or text)."""
        return [Partial(tokens, frames, [], "", len(tokens)) for tokens, frames in self._paths()]

    def finish(self, example: int | None = None) -> torch.Tensor:
        """``greedy_decode``'s result on the whole utterances: ``(B, U')`` long ids padded
        with -1; or example ``example``'s ids ``(U,)`` alone. Those examples are finished
        (``reset`` starts one again)."""
        paths = [tokens for tokens, _ in self._paths()]
        if example is not None:
            b = self._check_example(example)
            self.finished[b] = True
            return torch.tensor(paths[b], dtype=torch.long)
        width = max((len(p) for p in paths), default=0)
        out = torch.full((self.batch, width), -1, dtype=torch.long)
        for b, tokens in enumerate(paths):  # once, at the end
            out[b, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        self.finished[:] = True
        return out

    def reset(self, example: int) -> None:
        """Example ``example`` back at the start of a new utterance; the others as they
        were."""
        b = self._check_example(example)
        self.found = [(e[keep], t[keep], f[keep]) for e, t, f in self.found
                      for keep in [e != b]]
        self.previous[b] = -1
        self.frames[b] = 0
        self.finished[b] = False


class BeamStream(_Stream):
    """The prefix beam search of :class:`ctc_decoder.CtcBeamSearchDecoder` (or of
    :func:`ctc_decoder.ctc_beam_search`, ``decoder`` None) over chunks; made by
    ``decoder.stream(batch)`` or ``ctc_beam_search_stream(batch, ...)``. The C kernel
    runs it where it is built (its beams and history stay in the kernel's buffers), else
    the tensor search on the first chunk's device."""

    def __init__(self, batch: int, *, decoder=None, blank: int = 0, beam_size: int = 16,
                 nbest: int = 1, token_min_logp: float | None = None,
                 beam_threshold: float | None = None, horizon: int | None = None):
        if decoder is not None:
            blank, beam_size, nbest = decoder.blank, decoder.beam_size, decoder.nbest
            token_min_logp, beam_threshold = decoder.token_min_logp, decoder.beam_threshold
        super().__init__(batch, blank)
        D._check_options(beam_size, nbest, token_min_logp, beam_threshold)
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(
                horizon, (int, np.integer)) or horizon < 1):
            raise ValueError(f"horizon must be a number of frames >= 1 (or None), got "
                             f"{horizon!r}")
        self.horizon = None if horizon is None else int(horizon)
        self.decoder = decoder
        self.beam, self.nbest = int(beam_size), int(nbest)
        self.token_min_logp, self.beam_threshold = token_min_logp, beam_threshold
        # As the decoder's own call: distinct texts take every beam, then the best of each.
        self.wanted = (self.beam if decoder is not None and decoder.distinct_texts
                       and self.nbest > 1 else self.nbest)
        self.dtype: torch.dtype | None = None
        self._c: Any = None  # the kernel's stream (cpu.BeamStream)
        self._tensors: D._TensorSearch | None = None
        self._start_row = np.zeros(self.batch, dtype=np.int64)  # tensor search: reset(b)
        self._spell: tuple | None = None  # the kernel's spelling table (cpu.spell_table)
        self._every: dict = {}  # (B,) lengths of t frames each, for logits_len None
        self._all_finished = False
        # partial()'s last result per example, never handed out: (tokens, times, words,
        # text, final); the kernel's paths in lists of its own per example, which its
        # partial() updates from where a path changed
        self._shown = [_NOTHING_SHOWN] * self.batch
        self._tokens: list = [[] for _ in range(self.batch)]
        self._times: list = [[] for _ in range(self.batch)]

    def _open(self, classes: int, dtype: torch.dtype, device) -> None:
        """The search, at the first chunk: its class count, dtype and device."""
        if classes < 2:
            raise ValueError("logits need a class besides the blank (C >= 2)")
        if self.decoder is not None and classes != len(self.decoder.tokens):
            raise ValueError(f"logits have C={classes} classes but the vocabulary has "
                             f"{len(self.decoder.tokens)} tokens: they must be the same")
        self.dtype = torch.float64 if dtype == torch.float64 else torch.float32
        words = self.decoder._words_on(D._search_device(device)) if self.decoder else None
        kernel, arrays = D._kernel_and_tables(words)
        if kernel is not None:
            self._c = kernel.BeamStream(
                self.batch, classes, self.blank, self.beam, D._candidates(self.beam, classes),
                *D._kernel_limits(self.token_min_logp, self.beam_threshold), arrays,
                self.dtype, self.finished)
            if self.decoder is not None:
                self._spell = kernel.spell_table(self.decoder._pieces)
        else:
            if self.horizon is not None:
                raise ValueError("horizon needs the C kernel's search (its history is "
                                 "committed and freed as it goes); the tensor search, "
                                 "running here, keeps every frame's: pass horizon=None")
            device = words.boundary.device if words is not None else device
            self._tensors = D._TensorSearch(self.batch, classes, self.blank, self.beam, words,
                                            self.token_min_logp, self.beam_threshold, device,
                                            self.dtype)

    def feed(self, logits: torch.Tensor, logits_len: torch.Tensor | None = None) -> None:
        """The next ``(B, t, C)`` chunk of logits (or log-probabilities); ``logits_len``
        ``(B,)`` frames of it per example (None: all ``t``; 0: none for that example).
        Raises ``ValueError`` for a chunk whose batch, class count or lengths do not fit,
        frames for a finished example, or a frame of NaN or +inf (naming its example and
        frame, counted from the utterance's start)."""
        # The usual chunk goes straight to the kernel, which checks its lengths (and no
        # frames for a finished example) before it reads any; any other, or one it
        # refuses, takes the decoders' checks, which raise what is wrong.
        c = self._c
        if c is not None and not self._all_finished:
            frames = logits_len
            if frames is None and type(logits) is torch.Tensor and logits.dim() == 3:
                frames = self._every.get(logits.shape[1])  # every frame, as lengths
                if frames is None:
                    frames = self._every[logits.shape[1]] = torch.full(
                        (self.batch,), logits.shape[1], dtype=torch.long)
            if frames is not None:
                bad = c.feed_as_is(logits, frames, self.horizon or 0)
                if bad is not False:  # (False: not as it is, or refused)
                    if bad is not None:
                        D._raise_bad_frame(bad[0], bad[1], self.frames)
                    self.frames += frames.numpy()
                    return
        if self.finished.all():
            raise ValueError("the stream was finished (finish()): it takes no more frames; "
                             "call reset(b) for each example to decode new utterances")
        logits, logits_len, lengths = self._chunk(logits, logits_len)
        if self._c is None and self._tensors is None:
            self._open(logits.shape[2], logits.dtype, logits.device)
        if self._c is not None:  # the kernel's log-softmax and search, in one call
            bad = self._c.feed(logits.cpu(), logits_len.cpu(), self.horizon or 0)
            if bad is False:
                raise AssertionError("the kernel refused a chunk the checks let through")
            if bad is not None:
                D._raise_bad_frame(bad[0], bad[1], self.frames)
        else:
            assert self._tensors is not None
            with torch.no_grad():
                log_probs = D._log_probs(logits, logits_len, self.dtype, self.frames)
                device = self._tensors.device
                self._tensors.run(*D._padded_frames_zeroed(log_probs.to(device),
                                                           logits_len.to(device)))
        self.frames += lengths

    def partial(self) -> list:
        """Per example, a :class:`Partial` of the best beam now (by the search's rank:
        acoustic score, LM and bonuses so far, before the end-of-utterance terms). The
        kernel walks and spells again only the examples given frames since the last
        call (a chunk without frames changes neither the best path nor what is
        committed), in one call; the others' are copies of the last call's. (The tensor
        search walks every example's.)"""
        if self._c is None and self._tensors is None:
            return [Partial([], [], [], "", 0) for _ in range(self.batch)]
        shown = self._shown
        if self._c is not None:  # the examples given frames since, words spelled there
            got = self._c.partial(self._spell)
            if got is not None:
                try:
                    self._take(*got)
                except BaseException:  # (an interrupt, say) some examples took theirs:
                    self._c.unseen()  # the kernel sends every whole path next time
                    raise
        else:  # the tensor search: every example's best path, walked again
            assert self._tensors is not None
            for b, (tokens, frames) in enumerate(self._tensors.best_paths(self._start_row)):
                words = self._words(tokens)
                shown[b] = (tokens, frames, words, " ".join(words), 0)
        # Fresh lists each call: a caller changing one must not change the next call's.
        # (tuple.__new__: Partial's own __new__ is a Python call, some microseconds of a
        # chunk's partial() at batch 32.)
        return [_new(Partial, (tokens[:], times[:], words[:], text, final))
                for tokens, times, words, text, final in shown]

    def _take(self, index, committed, keep, at, cut, tails, text) -> None:
        """The kernel's partial() (:meth:`cpu.BeamStream.partial`) into each shown
        example's path and its result."""
        shown, m = self._shown, at[-1]
        # One decode for all; in ASCII text a byte's offset is a character's.
        whole = text.decode() if text is not None else None
        ascii_text = whole is not None and whole.isascii()
        for i, b in enumerate(index):
            a, z, k = at[i], at[i + 1], keep[i]
            tokens, times = self._tokens[b], self._times[b]
            tokens[k:] = tails[a:z]  # the path departs from the last one shown at k
            times[k:] = tails[m + a:m + z]
            if whole is None:
                words = self._words(tokens)
                shown[b] = (tokens, times, words, " ".join(words), committed[i])
                continue
            spelled = (whole[cut[i]:cut[i + 1]] if ascii_text
                       else text[cut[i]:cut[i + 1]].decode())
            shown[b] = (tokens, times, spelled.split("\0") if spelled else [],
                        spelled.replace("\0", " "), committed[i])

    def _words(self, tokens) -> list:
        return self.decoder.split_words(tokens)[0] if self.decoder is not None else []

    def finish(self, example: int | None = None) -> list:
        """The n-best of every example (a list per example), or of ``example`` alone,
        as the decoder's call gives them on the whole utterance; those examples are
        finished (``reset`` starts one again)."""
        examples = (list(range(self.batch)) if example is None
                    else [self._check_example(example)])
        found: dict = {}
        if self._c is None and self._tensors is None:
            if self.decoder is None:  # no frame ever fed, no vocabulary: the empty one
                found = {b: [([], [], 0.0, 0.0, 0.0, 0.0, 0.0, {})] for b in examples}
            else:  # the decoder's end-of-utterance terms still apply to it
                self._open(len(self.decoder.tokens), torch.float32, torch.device("cpu"))
        if self._c is not None:
            found = self._c.finish(self.wanted, examples)
        elif self._tensors is not None:
            every = self._tensors.finish(self.wanted, self._start_row)
            found = {b: every[b] for b in examples}
        self.finished[examples] = True
        self._all_finished = bool(self.finished.all())
        if self.decoder is not None:
            out = [self.decoder._hypotheses(found[b]) for b in examples]
        else:
            out = [D._plain_hypotheses(found[b]) for b in examples]
        return out if example is None else out[0]

    def reset(self, example: int) -> None:
        """Example ``example`` back at the start of a new utterance: no frames, not
        finished; the others as they were."""
        b = self._check_example(example)
        if self._c is not None:
            self._c.reset(b)
        elif self._tensors is not None:
            self._tensors.reset(b)
            self._start_row[b] = self._tensors.rows()
        self.frames[b] = 0
        self.finished[b] = False
        self._all_finished = False
