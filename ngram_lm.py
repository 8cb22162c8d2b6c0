"""Word n-gram language models read from ARPA files, held as tensors so that a beam
search can score thousands of words in one batched lookup, on CPU or CUDA.

:class:`NgramLM` reads an ARPA file (plain or gzipped, told by its first bytes; the
format KenLM's ``lmplz`` writes) once, and refuses, naming the file and the line, the
malformed files that KenLM refuses (see :func:`_read_arpa`). Its scores are KenLM's:
natural-log probabilities with backoff, ``<s>`` as the start context, ``</s>`` at the
end, and out-of-vocabulary words read as ``<unk>`` (log10 probability -100 where the
file has no ``<unk>``, as KenLM). The tests compare it with ``kenlm.Model.score`` on
random sentences.

Layout. The n-grams of each order form one level of a trie: an n-gram's key is
``id(its first n - 1 words) * V + id(its last word)``, and each level is sorted by key,
so looking up ``N`` n-grams is one ``torch.searchsorted``. A word is found by a 64-bit
hash of its characters (:func:`string_hash`), which a decoder can build token by token
(:func:`hash_parts`) without ever making the string. Where the file holds an n-gram
but not its context, the context is added as a placeholder that only passes its words
on (KenLM's default probing model refuses such files).

:func:`write_arpa` estimates a small backoff model from sentences (interpolated
absolute discounting), for tests and examples; use KenLM's ``lmplz`` for real corpora.
"""
from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NoReturn

import numpy as np
import torch

__all__ = ["NgramLM", "write_arpa", "string_hash", "hash_parts", "prefix_hashes"]

LN10 = math.log(10.0)
UNK_LOG10 = -100.0  # KenLM's probability for <unk> when the file has none
_MASK = (1 << 64) - 1
_BASE = 0x100000001B3  # an odd multiplier (FNV's prime): polynomial hashing mod 2^64


def _signed(value: int) -> int:
    """An unsigned 64-bit value as the int64 that holds the same bits."""
    value &= _MASK
    return value - (1 << 64) if value >> 63 else value


def hash_parts(text: str) -> tuple[int, int]:
    """``(hash, BASE ** len)`` of ``text``, both int64 bit patterns: the hash of a
    concatenation ``a + b`` is ``hash(a) * BASE**len(b) + hash(b)`` (mod 2^64), which is
    how a decoder extends a word by a token's characters with tensor ops."""
    h, power = 0, 1
    for ch in text:
        h = (h * _BASE + ord(ch) + 1) & _MASK
        power = (power * _BASE) & _MASK
    return _signed(h), _signed(power)


def string_hash(text: str) -> int:
    """The 64-bit polynomial hash of ``text`` (as int64) that identifies a word."""
    return hash_parts(text)[0]


def prefix_hashes(words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes (N,), prefixes (P,))`` int64: :func:`string_hash` of each word, and of
    every non-empty prefix of every word (with repeats), computed column by column over
    the words at once (a Python loop per prefix took 2.5 s for 100,000 words)."""
    if not words:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    width = int(lengths.max())
    # Code points + 1, as hash_parts adds them; 0 past a word's end (never read).
    codes = np.zeros((len(words), width), dtype=np.uint64)
    flat = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.uint32)
    rows = np.repeat(np.arange(len(words)), lengths)
    cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    codes[rows, cols] = flat.astype(np.uint64) + np.uint64(1)
    h = np.zeros(len(words), dtype=np.uint64)
    full = np.zeros(len(words), dtype=np.uint64)
    prefixes = []
    base = np.uint64(_BASE)
    with np.errstate(over="ignore"):  # arithmetic mod 2^64, as hash_parts masks
        for n in range(width):
            h = h * base + codes[:, n]
            live = lengths > n
            prefixes.append(h[live])
            full = np.where(lengths == n + 1, h, full)
    return full.view(np.int64), np.concatenate(prefixes).view(np.int64)


class ArpaError(ValueError):
    """A file that is not a well-formed ARPA language model."""


# What the reader takes as a number: plain ASCII decimals, as KenLM's parser (Python's
# float() would also take "nan", "infinity", "1_0" and non-ASCII digits). "inf" passes
# here to be refused as positive; "-inf" is a legal probability (never a legal backoff).
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?inf")
_COUNT = re.compile(r"ngram [ \t]*\+?([0-9]+)=[ \t]*\+?([0-9]+)")
_SECTION = re.compile(r"\\([1-9][0-9]*)-grams:")
# KenLM keeps log10 values as float32: from this magnitude on they round to infinity
# (a probability becomes -inf, a backoff is refused).
_FLOAT32_OVERFLOW = 2.0 ** 128 - 2.0 ** 103
_UNK = ("<unk>",)


def _open_arpa(path: str):
    """The file as binary lines: gunzipped where its first bytes are gzip's magic,
    whatever its name (KenLM also looks at the content)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_arpa(path: str):
    """``(counts, grams)``: the header's counts ``{order: count}`` and, per order,
    ``{words: (log10 prob, log10 backoff)}``.

    The file is held to what KenLM loads, so that a model that loads here scores as
    it does there: the header's orders run 1, 2, 3, ... once each, every one of them
    has its section, in order, with as many lines as the header gives; the 1-grams
    hold ``<s>`` and ``</s>``; probabilities are ASCII decimals at most 0 (or
    ``-inf``); backoffs are finite, and 0 on the highest order; nothing but blank
    lines follows ``\\end\\``. Where KenLM takes a file, so does this reader:
    comment lines (``#``) before ``\\data\\``, positive backoffs, a repeated n-gram
    (the first one counts, but the last ``<unk>``, as KenLM), ``<UNK>`` for
    ``<unk>``, an empty order. Every error names the file and the line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"language model file not found: {path}")

    def fail(at: int, why: str, text: str | None = None) -> NoReturn:
        shown = "" if text is None else f": {text[:80]!r}"
        raise ArpaError(f"{path}, line {at}: {why}{shown}")

    counts: list[int] = []  # the header's, by order - 1
    count_lines: list[int] = []  # where the header gives each
    grams: list[dict] = []
    stage = "start"  # then "data" (the header), "grams" (the sections), "end"
    order = held = expected = 0  # the section being read: its order, lines so far, due
    table: dict = {}
    vocab: set[str] = set()  # the 1-grams' words, which every longer n-gram must use

    def close(at: int, order: int, held: int, table: dict):
        """The checks at the end (line ``at``) of the section of ``order``, which held
        ``held`` lines, read into ``table``."""
        if held < counts[order - 1]:
            fail(at, f"the {order}-grams end after {held} of the {counts[order - 1]} that "
                     f"line {count_lines[order - 1]} gives")
        if order == 1:
            for marker in ("<s>", "</s>"):
                if (marker,) not in table:
                    fail(at, f"the 1-grams lack {marker} (KenLM requires both sentence "
                             "markers)")

    number = 0
    try:
        with _open_arpa(path) as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    fail(number, f"not UTF-8 text ({e.reason})")
                # Blank as KenLM sees it (C's isspace); inside a line, only spaces and
                # tabs separate fields (below).
                line = text.strip(" \t\r\n\v\f")
                if not line:
                    continue
                if order and line[0] != "\\":  # an n-gram: most lines, kept quick
                    if held == expected:
                        fail(number, f"more {order}-grams than the {expected} that line "
                                     f"{count_lines[order - 1]} gives", line)
                    held += 1
                    # KenLM splits at spaces and tabs only: other white space (a
                    # no-break space, a vertical tab) is part of a word there.
                    fields = line.replace("\t", " ").split(" ")
                    if "" in fields:
                        fields = [f for f in fields if f]
                    width = len(fields)
                    if width == order + 1:
                        backoff = 0.0
                    elif width == order + 2:
                        if _NUMBER.fullmatch(fields[-1]) is None:
                            fail(number, "the backoff is not a number", line)
                        backoff = float(fields[-1])
                        if not -_FLOAT32_OVERFLOW < backoff < _FLOAT32_OVERFLOW:
                            fail(number, "the backoff is not finite", line)
                        if backoff and order == len(counts):
                            fail(number, f"a backoff on the highest order ({order}), where "
                                         "nothing backs off", line)
                    else:
                        fail(number, f"a {order}-gram line needs a probability, {order} "
                                     "word(s) and an optional backoff", line)
                    if _NUMBER.fullmatch(fields[0]) is None:
                        fail(number, "the probability is not a number", line)
                    prob = float(fields[0])
                    if prob > 0.0:
                        fail(number, "a positive log10 probability", line)
                    if prob < -_FLOAT32_OVERFLOW:
                        prob = -math.inf
                    words = tuple(fields[1:order + 1])
                    if "<UNK>" in words:  # KenLM reads either spelling as <unk>
                        words = tuple("<unk>" if w == "<UNK>" else w for w in words)
                    if order > 1 and not vocab.issuperset(words):
                        missing = next(w for w in words if w not in vocab)
                        fail(number, f"the word {missing!r} is not among the 1-grams", line)
                    value = (prob, backoff)
                    # A repeated n-gram: KenLM keeps the first, but the last <unk>.
                    if table.setdefault(words, value) is not value and words == _UNK:
                        table[words] = value
                    continue
                if stage == "start":
                    if text.startswith("#"):  # KenLM's comments, before \data\ only
                        continue
                    if line != "\\data\\":
                        fail(number, "not an ARPA file (expected the \\data\\ header first)",
                             line)
                    stage = "data"
                    continue
                if stage == "end":
                    fail(number, "text after \\end\\", line)
                section = _SECTION.fullmatch(line)
                if section is not None or line == "\\end\\":
                    if not counts:
                        fail(number, "the \\data\\ header gives no 'ngram N=count' line",
                             line)
                    if order:
                        close(number, order, held, table)
                        if order == 1:
                            vocab = {w for (w,) in table}
                    following = len(grams) + 1  # the section due next
                    if section is None:  # \end\
                        if following <= len(counts):
                            fail(number, f"no \\{following}-grams: section, though line "
                                         f"{count_lines[following - 1]} counts "
                                         f"{following}-grams", line)
                        stage, order = "end", 0
                        continue
                    if following > len(counts):
                        fail(number, f"expected \\end\\ after the {len(counts)}-grams, the "
                                     "header's highest order", line)
                    if int(section[1]) != following:
                        fail(number, f"expected the \\{following}-grams: section", line)
                    stage, order, held = "grams", following, 0
                    expected = counts[order - 1]
                    table = {}
                    grams.append(table)
                    continue
                if stage == "data":
                    count = _COUNT.fullmatch(line)
                    if count is None:
                        fail(number, "expected 'ngram N=count' in the \\data\\ header", line)
                    if int(count[1]) != len(counts) + 1:
                        fail(number, f"expected 'ngram {len(counts) + 1}=count': the "
                                     "header's orders run 1, 2, 3, ... once each", line)
                    counts.append(int(count[2]))
                    count_lines.append(number)
                    continue
                fail(number, f"not a {order}-gram line", line)
    except (OSError, EOFError, zlib.error) as e:  # a damaged gzip stream, or a read error
        raise ArpaError(f"{path}, line {number + 1}: cannot be read ({e})") from e
    if stage != "end":
        raise ArpaError(f"{path}, line {number + 1}: the file ends before \\end\\ "
                        "(truncated?)")
    return dict(enumerate(counts, 1)), grams


def _digest(path: str) -> str:
    """SHA-256 of the file's bytes (0.08 s for 110 MB)."""
    import hashlib

    if not os.path.isfile(path):
        raise FileNotFoundError(f"language model file not found: {path}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_folder(cache, path: str) -> str | None:
    """Where an ARPA file's compact tables are kept, or None (not cached): ``cache`` a
    folder; True the default folder, ``$SEQ_LOSS_UTIL_CACHE/lm`` or
    ``~/.cache/seq_loss_util/lm``; ``"auto"`` the default folder for files of
    ``NgramLM.CACHE_FROM_BYTES`` (8 MB) and more; False or None, never."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, str) and cache == "auto":
        try:
            if os.path.getsize(path) < NgramLM.CACHE_FROM_BYTES:
                return None
        except OSError:
            return None  # a missing file: the reader says so
        cache = True
    if cache is True:
        base = os.environ.get("SEQ_LOSS_UTIL_CACHE")
        if not base:
            home = os.path.expanduser("~")
            if home.startswith("~"):  # no home directory (some containers): no cache
                return None
            base = os.path.join(home, ".cache", "seq_loss_util")
        return os.path.join(base, "lm")
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    raise TypeError(f"cache must be 'auto', True, False or a folder, got {cache!r}")


class NgramLM:
    """A word n-gram model from an ARPA file, scored in batches on ``device``.

    ``NgramLM(path, device="cpu", cache="auto")``. Scores are natural logs (ARPA stores
    log10). Reading a large ARPA file takes a while (47 s for 110 MB, 3.1 million
    n-grams); the tables are then written once in compact form to a cache folder
    (``cache``: ``"auto"`` for files of 8 MB and more, True, False, or a folder; the
    default folder is ``$SEQ_LOSS_UTIL_CACHE/lm``, else ``~/.cache/seq_loss_util/lm``),
    named by the SHA-256 of the ARPA file's bytes, and later loads of the same file map
    them from there in well under a second. A changed file has another digest.

    * :meth:`score_sentence` ``(words)``: ln p of a sentence with ``<s>`` and ``</s>``,
      as ``kenlm.Model(path).score(" ".join(words), bos=True, eos=True) * ln 10``.
    * :meth:`lookup` ``(hashes)``: word ids for :func:`string_hash` values (``<unk>``'s
      id for words not in the model).
    * :meth:`score` ``(context, words)``: ln p(word | context) for ``N`` words at once,
      and the next contexts. A context is ``(N, order - 1)`` word ids, most recent
      last, -1 where there is no word (shorter than the order).
    """

    # Files from this size on are cached in compact form by default (cache="auto").
    CACHE_FROM_BYTES = 8 << 20
    _CACHE_FORMAT = 1

    def __init__(self, path: str | os.PathLike, *, device="cpu", cache="auto"):
        self.path = os.fspath(path)
        self.device = torch.device(device)
        folder = _cache_folder(cache, self.path)
        if folder is None:
            self._parse()
        else:
            digest = _digest(self.path)
            if not self._load_compact(folder, digest):
                self._parse()
                self._save_compact(folder, digest)
        self._to_device()

    def _parse(self) -> None:
        """The tables, from the ARPA file (on the CPU)."""
        _, grams = _read_arpa(self.path)
        self.order = len(grams)
        # The order is the header's, empty orders included (``ngram 3=0``): KenLM
        # keeps them too, and still charges the backoffs of the order below them.
        # Contexts that the file lacks become placeholders (not scored, backoff 0), so
        # every n-gram is reachable from its first word, level by level (the reader has
        # checked that each of its words is a 1-gram).
        real = [set(level) for level in grams]
        for order in range(self.order, 1, -1):
            for words in list(grams[order - 1]):
                for cut in range(order - 1, 0, -1):
                    prefix = words[:cut]
                    if prefix in grams[cut - 1]:
                        break
                    grams[cut - 1][prefix] = (UNK_LOG10, 0.0)
        words = sorted(w for (w,) in grams[0])
        if ("<unk>",) not in grams[0]:
            grams[0][("<unk>",)] = (UNK_LOG10, 0.0)
            real[0].add(("<unk>",))
            words = sorted(words + ["<unk>"])
        self.vocab = {w: i for i, w in enumerate(words)}
        self.unk = self.vocab["<unk>"]
        self.bos = self.vocab["<s>"]  # the reader requires both
        self.eos = self.vocab["</s>"]
        size = len(words)
        self._size = size

        hashes = torch.tensor([string_hash(w) for w in words], dtype=torch.long)
        order_of_hash = torch.argsort(hashes)
        self._hash_keys = hashes[order_of_hash]
        if len(words) > 1 and bool((self._hash_keys[1:] == self._hash_keys[:-1]).any()):
            raise ArpaError(f"{self.path}: two words share a 64-bit hash; rename one")
        self._hash_ids = order_of_hash

        # Level by level: keys sorted, with ln prob, ln backoff and whether real.
        self._keys, self._prob, self._backoff, self._real = [], [], [], []
        ids = {(w,): self.vocab[w] for (w,) in grams[0]}
        previous = ids
        for order in range(1, self.order + 1):
            entries = grams[order - 1]
            if order == 1:
                keyed = {ids[g]: g for g in entries}
            else:
                keyed = {previous[g[:-1]] * size + self.vocab[g[-1]]: g for g in entries}
            keys = sorted(keyed)
            level_ids = {keyed[k]: i for i, k in enumerate(keys)}
            self._keys.append(torch.tensor(keys, dtype=torch.long))
            self._prob.append(torch.tensor([entries[keyed[k]][0] * LN10 for k in keys],
                                           dtype=torch.float64))
            self._backoff.append(torch.tensor([entries[keyed[k]][1] * LN10 for k in keys],
                                              dtype=torch.float64))
            self._real.append(torch.tensor([keyed[k] in real[order - 1] for k in keys],
                                           dtype=torch.bool))
            previous = level_ids

    _TABLES = ("_keys", "_prob", "_backoff", "_real")

    def _to_device(self) -> None:
        for name in self._TABLES:
            setattr(self, name, [t.to(self.device) for t in getattr(self, name)])
        self._hash_keys = self._hash_keys.to(self.device)
        self._hash_ids = self._hash_ids.to(self.device)

    def _load_compact(self, folder: str, digest: str) -> bool:
        """The tables from the compact file for this ARPA's digest, memory-mapped;
        False where there is none (or it is damaged, or of another format)."""
        path = os.path.join(folder, f"{digest}.pt")
        if not os.path.isfile(path):
            return False
        try:
            saved = torch.load(path, mmap=True, weights_only=True)
            if saved.get("format") != self._CACHE_FORMAT or saved.get("digest") != digest:
                return False
            words = saved["words"]
            self.order = int(saved["order"])
            self.vocab = {w: i for i, w in enumerate(words)}
            for name in self._TABLES:
                setattr(self, name, list(saved[name]))
            self._hash_keys, self._hash_ids = saved["hash_keys"], saved["hash_ids"]
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError):
            return False  # a damaged or foreign file: read the ARPA again, write it anew
        self.unk, self.bos, self.eos = self.vocab["<unk>"], self.vocab["<s>"], self.vocab["</s>"]
        self._size = len(words)
        return True

    def _save_compact(self, folder: str, digest: str) -> None:
        """Writes the tables for this ARPA's digest (a new file, renamed into place);
        a folder that cannot be written is skipped silently: the cache only saves time."""
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        saved = dict(format=self._CACHE_FORMAT, digest=digest, order=self.order, words=words,
                     hash_keys=self._hash_keys, hash_ids=self._hash_ids,
                     **{name: getattr(self, name) for name in self._TABLES})
        try:
            os.makedirs(folder, exist_ok=True)
            temporary = os.path.join(folder, f".{digest}.{os.getpid()}.tmp")
            torch.save(saved, temporary)
            os.replace(temporary, os.path.join(folder, f"{digest}.pt"))
        except OSError:
            pass

    def __repr__(self) -> str:
        counts = ", ".join(str(k.numel()) for k in self._keys)
        return f"NgramLM({self.path!r}, order={self.order}, n-grams=[{counts}])"

    def to(self, device) -> NgramLM:
        """This model with its tables on ``device`` (self if already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        other = object.__new__(NgramLM)
        other.__dict__.update(self.__dict__)
        other.device = device
        other._to_device()
        return other

    # -------------------------------------------------------------- batched lookups
    def lookup(self, hashes: torch.Tensor) -> torch.Tensor:
        """Word ids for :func:`string_hash` values (any shape); ``<unk>`` where absent."""
        at = torch.searchsorted(self._hash_keys, hashes).clamp(max=self._hash_keys.numel() - 1)
        found = self._hash_keys[at] == hashes
        return torch.where(found, self._hash_ids[at], self.unk)

    def _find(self, level: int, keys: torch.Tensor, ok: torch.Tensor):
        """Index into level ``level`` (0-based) of ``keys``, and whether it is there."""
        table = self._keys[level]
        at = torch.searchsorted(table, keys).clamp(max=table.numel() - 1)
        return at, ok & (table[at] == keys)

    def start(self, count: int) -> torch.Tensor:
        """``(count, order - 1)`` contexts holding ``<s>``."""
        context = torch.full((count, max(self.order - 1, 0)), -1, dtype=torch.long,
                             device=self.device)
        if self.order > 1:
            context[:, -1] = self.bos
        return context

    def score(self, context: torch.Tensor, words: torch.Tensor):
        """``(ln p(words | context) (N,) float64, next context (N, order - 1))``: the
        longest n-gram the file holds, plus the backoffs of the longer contexts."""
        n = words.shape[0]
        depth = self.order - 1
        total = torch.zeros(n, dtype=torch.float64, device=words.device)
        done = torch.zeros(n, dtype=torch.bool, device=words.device)
        # From the longest context down: back off until an n-gram is found.
        for length in range(depth, -1, -1):
            if length and not self._keys[length - 1].numel():
                continue  # an empty order: no context this long, nor n-gram, exists
            # The context of this length, looked up word by word from its first word.
            ok = torch.ones(n, dtype=torch.bool, device=words.device)
            node = torch.zeros(n, dtype=torch.long, device=words.device)
            for step in range(length):
                word = context[:, depth - length + step]
                ok = ok & (word >= 0)
                key = word if step == 0 else node * self._size + word
                node, ok = self._find(step, key.clamp(min=0), ok)
            if self._keys[length].numel():
                key = words if length == 0 else node * self._size + words
                at, hit = self._find(length, key, ok)
                hit = hit & self._real[length][at]
                total = torch.where(~done & hit, total + self._prob[length][at], total)
            else:  # the highest non-empty order is below: only the context's backoff
                hit = torch.zeros(n, dtype=torch.bool, device=words.device)
            if length > 0:  # not found: this context's backoff (0 if it is absent)
                backoff = torch.where(ok, self._backoff[length - 1][node], 0.0)
                total = torch.where(~done & ~hit, total + backoff, total)
            done = done | hit
        # Nothing found, not even the unigram (a placeholder): <unk>'s probability.
        unk = self._unk_prob().to(total.device)
        total = torch.where(done, total, total + unk)
        following = torch.cat([context[:, 1:], words[:, None]], dim=1) if depth else context
        return total, following

    def max_log_prob(self) -> float:
        """An upper bound of ``ln p(word | context)`` over every word and context: the
        largest probability of any order plus each context order's largest positive
        backoff. A normalised model never scores a word above 0, but ARPA files may
        hold positive backoffs (KenLM takes them), which can lift a backed-off word
        above it; a search that stops early on a bound of a word's score needs this."""
        top = max([float(p.max()) for p in self._prob if p.numel()]
                  + [float(self._unk_prob())])
        return top + sum(max(float(b.max()), 0.0) for b in self._backoff[:-1] if b.numel())

    def _unk_prob(self) -> torch.Tensor:
        return self._prob[0][self.unk]

    # -------------------------------------------------------------- one sentence
    def ids(self, words: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.vocab.get(w, self.unk) for w in words], dtype=torch.long,
                            device=self.device)

    def score_sentence(self, words: Sequence[str] | str, *, bos: bool = True,
                       eos: bool = True) -> float:
        """ln p of ``words`` (a list, or a string split at spaces)."""
        if isinstance(words, str):
            words = words.split()
        ids = self.ids(list(words) + (["</s>"] if eos else []))
        context = self.start(1) if bos else torch.full(
            (1, max(self.order - 1, 0)), -1, dtype=torch.long, device=self.device)
        total = 0.0
        for i in range(ids.shape[0]):
            step, context = self.score(context, ids[i:i + 1])
            total += float(step[0])
        return total


def write_arpa(sentences: Iterable[Sequence[str] | str], path: str | os.PathLike, *,
               order: int = 3, discount: float = 0.7) -> str:
    """Estimates a backoff n-gram model from ``sentences`` (word lists or strings) and
    writes it as ARPA to ``path`` (gzipped if it ends in ``.gz``); returns the path.

    Interpolated absolute discounting: each seen n-gram keeps ``(count - discount) /
    count(context)`` plus its share of the lower order, and the context's backoff is
    the mass taken away. Unigrams are add-one smoothed over the words seen and
    ``<unk>``. Small and exact enough for tests and examples; a real corpus wants
    KenLM's ``lmplz`` (modified Kneser-Ney)."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if not 0 < discount < 1:
        raise ValueError(f"discount must be in (0, 1), got {discount}")
    counts: list[Counter] = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = sentence.split() if isinstance(sentence, str) else list(sentence)
        padded = ["<s>"] + words + ["</s>"]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                gram = tuple(padded[i:i + n])
                if n == 1 and gram == ("<s>",):
                    continue
                if gram[-1] == "<s>":
                    continue
                counts[n - 1][gram] += 1
    vocab = sorted({w for (w,) in counts[0]} | {"<unk>"})
    total = sum(counts[0].values())
    log10 = {}  # gram -> log10 prob
    prob1 = {(w,): (counts[0][(w,)] + 1) / (total + len(vocab)) for w in vocab}
    probs = [prob1]
    backoffs: list[dict] = [dict() for _ in range(order)]
    for n in range(2, order + 1):
        context_count: Counter = Counter()
        followers: Counter = Counter()
        for gram, c in counts[n - 1].items():
            context_count[gram[:-1]] += c
            followers[gram[:-1]] += 1
        level = {}
        for gram, c in counts[n - 1].items():
            h = gram[:-1]
            gamma = discount * followers[h] / context_count[h]
            lower = _interpolated(gram[1:], probs, backoffs)
            level[gram] = (c - discount) / context_count[h] + gamma * lower
        for h in context_count:
            backoffs[n - 2][h] = discount * followers[h] / context_count[h]
        probs.append(level)
    lines = ["", "\\data\\"]
    lines += [f"ngram {n}={len(probs[n - 1]) + (1 if n == 1 else 0)}"
              for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        entries: dict[tuple, float | None] = dict(probs[n - 1])
        if n == 1:
            entries[("<s>",)] = None
        for gram in sorted(entries):
            p = entries[gram]
            log10[gram] = -99.0 if p is None else math.log10(p)
            fields = [f"{log10[gram]:.6f}", " ".join(gram)]
            if n < order and gram in backoffs[n - 1]:
                fields.append(f"{math.log10(backoffs[n - 1][gram]):.6f}")
            lines.append("\t".join(fields))
    lines += ["", "\\end\\", ""]
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path


def _interpolated(gram, probs, backoffs) -> float:
    """p(gram[-1] | gram[:-1]) under the orders estimated so far (backoff form)."""
    n = len(gram)
    if n == 1:
        return probs[0].get(gram, probs[0][("<unk>",)])
    if gram in probs[n - 1]:
        return probs[n - 1][gram]
    return backoffs[n - 2].get(gram[:-1], 1.0) * _interpolated(gram[1:], probs, backoffs)
