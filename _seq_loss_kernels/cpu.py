"""The compiled CPU kernel of seq_loss_util's CTC loss: build, cache, load, run.

``cpu.c`` beside this file is compiled once per source, compiler and machine with the
system C compiler (``cc``, or ``$CC``) into a cache folder, then loaded with ctypes.
:func:`backend` returns :class:`KernelBackend`, whose ``forward``, ``backward`` and
``viterbi`` take the same arguments as seq_loss_util's PyTorch backend, or None when
no kernel can be had (seq_loss_util then runs its PyTorch backend).

``$SEQ_LOSS_UTIL_CFLAGS`` adds compiler flags (split as a shell would), after the
defaults so that they win: ``make sanitize`` builds the kernel with
``-fsanitize=address,undefined`` this way. They are part of the cache key, so such a
build never shares a cached library with a plain one.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import math
import os
import threading
from pathlib import Path

import numpy as np
import torch

from .verdict import fault_bits, verdict_passes


def _source() -> str:
    """The library's C text: the loss kernels (cpu.c) and ctc_decoder's beam search
    (ctc_beam.c), one translation unit per floating type."""
    here = Path(__file__).parent
    # #line: the compiler's and the sanitizers' reports name the file and line to edit,
    # not the concatenation built in a temporary folder.
    parts = []
    for path in (here / "cpu.c", here / "ctc_beam.c"):
        quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'#line 1 "{quoted}"\n{path.read_text()}\n')
    return "".join(parts)


# float32's exp and log are cpu.c's inline ones (vector code, within 1 ulp); float64
# keeps libm's.
_KERNEL_VARIANTS = {torch.float32: ("f32", "float", "ctc_vexpf", "ctc_vlogf"),
                    torch.float64: ("f64", "double", "exp", "log")}
_kernel_lib = None  # the loaded library, False once building it has failed
_kernel_pool = None


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object but none of its worker threads: work
    # submitted there would wait forever. The child builds a pool of its own.
    global _kernel_pool
    _kernel_pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


class KernelCacheWarning(RuntimeWarning):
    """A cache folder or cached library was refused because another user could have
    written it; the kernel was built afresh instead (the message names the path)."""


def _kernel_cache_dir() -> tuple[Path, bool]:
    """The cache folder and whether it is the shared-temporary-directory fallback:
    ``$SEQ_LOSS_UTIL_CACHE``, else ``~/.cache/seq_loss_util``, else (no home
    directory, as in some containers) a per-user folder in the temporary directory."""
    import tempfile

    if os.environ.get("SEQ_LOSS_UTIL_CACHE"):
        return Path(os.environ["SEQ_LOSS_UTIL_CACHE"]), False
    try:
        return Path.home() / ".cache" / "seq_loss_util", False
    except (RuntimeError, KeyError):  # no $HOME and no password-file entry
        user = os.geteuid() if hasattr(os, "geteuid") else "user"
        return Path(tempfile.gettempdir()) / f"seq_loss_util-{user}", True


class _Untrusted(Exception):
    """A folder or file that another user could have written."""


def _distrust(st: os.stat_result, what: str) -> str | None:
    """Why a folder or file with status ``st`` may hold another user's bytes, or None.
    Only this process's user may own it or be able to write it: anyone else who can
    could put a library there whose constructor runs inside this process."""
    if not hasattr(os, "geteuid"):  # no POSIX owners (Windows): nothing to compare
        return None
    if st.st_uid != os.geteuid():
        return f"{what} is owned by uid {st.st_uid}, not by this process's uid {os.geteuid()}"
    if st.st_mode & 0o022:
        return f"{what} is writable by group or others (mode {st.st_mode & 0o777:o})"
    return None


def _make_private_folders(path: Path) -> None:
    """Makes ``path`` and its missing parents with mode 0700, whatever the umask (a
    parent that others could write would let them rename the cache away later)."""
    missing = []
    while not path.exists() and not path.is_symlink() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile, by another process or user: checked later
            pass


def _open_trusted_cache() -> tuple[Path, int | None, str | None]:
    """The cache folder, made if missing, opened: ``(path, descriptor, None)``, or
    ``(path, None, why)`` when it cannot be trusted. Everything later happens relative
    to the descriptor, so renaming the folder after this check changes nothing."""
    import errno
    import stat

    cache, shared_tmp = _kernel_cache_dir()
    _make_private_folders(cache)
    # In the shared temporary directory the name is predictable: a link planted there
    # could lead anywhere, so it is refused rather than followed.
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) if shared_tmp else 0
    try:
        fd = os.open(cache, flags)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and cache.is_symlink():
            return cache, None, f"the cache folder {cache} is a symbolic link in a shared folder"
        if e.errno == errno.ENOTDIR:
            return cache, None, f"the cache folder {cache} is not a folder"
        raise
    st = os.fstat(fd)
    why = (f"the cache folder {cache} is not a folder" if not stat.S_ISDIR(st.st_mode)
           else _distrust(st, f"the cache folder {cache}"))
    if why:
        os.close(fd)
        return cache, None, why
    return cache, fd, None


def _bind_kernel(lib) -> bool:
    """Declares every entry point's arguments; False if the library lacks one."""

    p, i64 = ctypes.c_void_p, ctypes.c_int64
    signatures = {"ctc_forward": [p, i64, i64, p, i64, p, p, i64, i64, p, p],
                  "ctc_backward": [p, i64, i64, p, i64, p, p, p, p, i64, i64, p],
                  "ctc_viterbi": [p, i64, i64, p, i64, p, p, i64, i64, p, p, p],
                  "ctc_viterbi_band": [p, i64, i64, i64, p, i64, p, i64, p, p, p],
                  "ctc_band_backtrace": [p, i64, p, i64, i64, p],
                  "ctc_viterbi_band_back": [p, i64, i64, i64, i64, p, i64, p, i64, p, p],
                  "ctc_exp_log": [p, i64, p, p],
                  "ctc_prepare": [p, i64, i64, p, p, i64, i64, p, i64, i64, i64, i64, i64,
                                  i64, p, p, p, p, p],
                  "ctc_check_augmented": [p, i64, i64, p, p, i64, i64, p, i64, i64, i64,
                                          i64, p],
                  "ctc_bad_frames": [p, i64, i64, p, i64, i64, p],
                  "ctc_log_softmax": [p, i64, i64, p, i64, i64, p, p],
                  "ctc_log_softmax_batch": [p, i64, i64, i64, i64, p, p, p],
                  "ctc_finish_loss": [p, p, p, p, i64, i64, i64, i64, p, p, p],
                  "ctc_grad_scale": [p, i64, p, p, i64, p],
                  "ctc_loss_forward": [p, i64, i64, p, i64, p, p, i64, i64, ctypes.c_int32,
                                       i64, i64, p, p, p, p, p],
                  "ctc_loss_backward": [p, i64, i64, p, i64, p, p, p, p, i64, p, p, i64, p]}
    d = ctypes.c_double
    signatures["ctc_beam_search"] = [p, i64, i64, p, i64, i64, i64, i64, i64, i64, d, d,
                                      ctypes.POINTER(_CtcWords), p, p, p, p, p, p, p, p, p]
    signatures["ctc_beam_children"] = [p, i64, p, i64, p, p, p, i64, p]
    signatures["ctc_beam_stream_open"] = [i64, i64, i64, i64, i64, d, d,
                                          ctypes.POINTER(_CtcWords)]
    signatures["ctc_beam_stream_close"] = [p]
    signatures["ctc_beam_stream_feed_logits"] = [p, p, i64, i64, p, p, i64, p, p, p]
    signatures["ctc_beam_stream_feed_threads"] = [p, p, i64, i64, p, p, i64, p, p, i64]
    signatures["ctc_beam_stream_pool"] = [p]
    signatures["ctc_beam_stream_unseen"] = [p]
    signatures["ctc_beam_stream_held"] = [p, p]
    signatures["ctc_beam_stream_partial"] = [p, p, p, p, p, p, p]
    signatures["ctc_spell_words"] = [p, i64, p, p, p, p]
    signatures["ctc_beam_stream_finish"] = [p, i64, i64, i64, i64, p, p, p, p, p, p, p, p, p]
    signatures["ctc_beam_stream_reset"] = [p, i64]
    try:
        for sfx, *_ in _KERNEL_VARIANTS.values():
            for name, argtypes in signatures.items():
                getattr(lib, f"{name}_{sfx}").argtypes = argtypes
            getattr(lib, f"ctc_beam_search_{sfx}").restype = ctypes.c_int
            getattr(lib, f"ctc_beam_children_{sfx}").restype = ctypes.c_int
            getattr(lib, f"ctc_band_backtrace_{sfx}").restype = ctypes.c_int
            getattr(lib, f"ctc_beam_stream_open_{sfx}").restype = ctypes.c_void_p
            getattr(lib, f"ctc_beam_stream_close_{sfx}").restype = None
            getattr(lib, f"ctc_beam_stream_held_{sfx}").restype = None
            for name in ("finish", "reset"):
                getattr(lib, f"ctc_beam_stream_{name}_{sfx}").restype = ctypes.c_int
            getattr(lib, f"ctc_beam_stream_partial_{sfx}").restype = ctypes.c_int64
            getattr(lib, f"ctc_spell_words_{sfx}").restype = ctypes.c_int64
            getattr(lib, f"ctc_beam_stream_feed_logits_{sfx}").restype = ctypes.c_int64
            getattr(lib, f"ctc_beam_stream_feed_threads_{sfx}").restype = ctypes.c_int64
            getattr(lib, f"ctc_beam_stream_pool_{sfx}").restype = None
            getattr(lib, f"ctc_beam_stream_unseen_{sfx}").restype = None
            getattr(lib, f"ctc_log_softmax_batch_{sfx}").restype = ctypes.c_int64
            getattr(lib, f"ctc_loss_forward_{sfx}").restype = ctypes.c_int32
            getattr(lib, f"ctc_loss_backward_{sfx}").restype = ctypes.c_int
    except AttributeError:
        return False
    return True


_P, _I64, _F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double


class _CtcWords(ctypes.Structure):
    """ctc_beam.c's struct ctc_words, field for field."""
    _fields_ = [("char_hash", _P), ("char_power", _P), ("char_len", _P), ("boundary", _P),
                ("prefix_mode", _I64), ("lm_weight", _F64), ("word_score", _F64),
                ("hotword_weight", _F64), ("partial_oov", _F64), ("order", _I64),
                ("size", _I64), ("unk", _I64), ("bos", _I64), ("eos", _I64),
                ("unk_prob", _F64), ("keys", _P), ("prob", _P), ("backoff", _P), ("real", _P),
                ("counts", _P), ("hash_keys", _P), ("hash_ids", _P), ("n_hash", _I64),
                ("prefixes", _P), ("n_prefixes", _I64), ("phrases", _P), ("n_phrases", _I64),
                ("phrase_len", _I64), ("child_keys", _P), ("child_start", _P),
                ("child_tokens", _P), ("n_child_keys", _I64), ("lm_max", _F64),
                ("unk_score", _F64), ("partial_chars", _F64), ("words", _P),
                ("n_words", _I64),
                # struct ctc_lm tlm, flat (the same layout as nested), then its map.
                ("t_order", _I64), ("t_size", _I64), ("t_unk", _I64), ("t_bos", _I64),
                ("t_eos", _I64), ("t_unk_prob", _F64), ("t_keys", _P), ("t_prob", _P),
                ("t_backoff", _P), ("t_real", _P), ("t_counts", _P), ("tlm_ids", _P),
                ("tlm_weight", _F64), ("tlm_max", _F64)]


def beam_children(prefixes, keys, power, part, length):
    """``(K, I)`` bool: key ``j`` grown by token ``i``'s characters (hash parts
    ``power``, ``part``; ``length`` of them) is one of the sorted int64 ``prefixes``, or
    the token has none (ctc_decoder._Words._children; contiguous CPU int64 inputs)."""
    out = torch.empty(keys.numel(), power.numel(), dtype=torch.uint8)
    if _kernel_lib.ctc_beam_children_f64(prefixes.data_ptr(), prefixes.numel(),
                                         keys.data_ptr(), keys.numel(), power.data_ptr(),
                                         part.data_ptr(), length.data_ptr(), power.numel(),
                                         out.data_ptr()):
        raise MemoryError("the table of known continuations did not fit in memory")
    return out.bool()


def _words_struct(words):
    """``(struct, keep)``: the ctc_words structure of ``ctc_decoder``'s tables (its
    ``_Words.arrays``; None for none), and the objects it points into, which must stay
    alive as long as the structure is used."""
    keep: list = []
    if words is None:
        return None, keep

    def ptr(tensor):
        keep.append(tensor)
        return tensor.data_ptr()

    def table(tensors):
        array = (ctypes.c_void_p * max(len(tensors), 1))(*[ptr(t) for t in tensors])
        keep.append(array)
        return ctypes.cast(array, ctypes.c_void_p)

    def lm_fields(prefix, tables):
        return {prefix + "order": tables["order"], prefix + "size": tables["size"],
                prefix + "unk": tables["unk"], prefix + "bos": tables["bos"],
                prefix + "eos": tables["eos"], prefix + "unk_prob": tables["unk_prob"],
                prefix + "keys": table(tables["keys"]),
                prefix + "prob": table(tables["prob"]),
                prefix + "backoff": table(tables["backoff"]),
                prefix + "real": table(tables["real"]),
                prefix + "counts": ptr(tables["counts"])}

    lm_tables, token_lm = words["lm"], words["token_lm"]
    struct = _CtcWords(
        char_hash=ptr(words["char_hash"]), char_power=ptr(words["char_power"]),
        char_len=ptr(words["char_len"]), boundary=ptr(words["boundary"]),
        prefix_mode=int(words["prefix_mode"]), lm_weight=words["lm_weight"],
        word_score=words["word_score"], hotword_weight=words["hotword_weight"],
        partial_oov=words["partial_oov"], **lm_fields("", lm_tables),
        **lm_fields("t_", token_lm), tlm_ids=ptr(words["tlm_ids"]),
        tlm_weight=float(words["tlm_weight"]), tlm_max=float(words["tlm_max"]),
        hash_keys=ptr(lm_tables["hash_keys"]),
        hash_ids=ptr(lm_tables["hash_ids"]), n_hash=lm_tables["hash_keys"].numel(),
        prefixes=ptr(words["prefixes"]), n_prefixes=words["prefixes"].numel(),
        phrases=ptr(words["phrases"]), n_phrases=words["phrases"].numel(),
        phrase_len=int(words["phrase_len"]), child_keys=ptr(words["children"][0]),
        child_start=ptr(words["children"][1]), child_tokens=ptr(words["children"][2]),
        n_child_keys=words["children"][0].numel(), lm_max=float(words["lm_max"]),
        unk_score=float(words["unk_score"]), partial_chars=float(words["partial_chars"]),
        words=ptr(words["words"]), n_words=words["words"].numel())
    return struct, keep


def beam_search(log_probs, logits_len, blank: int, beam: int, width: int, nbest: int,
                token_min_logp, beam_threshold, words):
    """ctc_decoder's prefix beam search in C, on contiguous CPU ``log_probs`` (B, T, C)
    float32 or float64 and ``logits_len`` (B,) int64. ``words`` is None or a dict of
    the tables ``ctc_decoder`` builds (its ``_Words.arrays``). Returns numpy arrays
    ``(count (B,), tokens (B, N, T), times (B, N, T), lengths (B, N), score, acoustic,
    lm, token_lm, unk (B, N))``."""

    batch, frames, classes = log_probs.shape
    f64 = torch.float64
    tokens = torch.empty(batch, nbest, max(frames, 1), dtype=torch.long)
    times = torch.empty_like(tokens)
    lengths = torch.zeros(batch, nbest, dtype=torch.long)
    count = torch.zeros(batch, dtype=torch.long)
    score, acoustic, lm, tlm, unk = (torch.zeros(batch, nbest, dtype=f64) for _ in range(5))
    struct, keep = _words_struct(words)  # keep: what the structure points to, alive
    run = getattr(_kernel_lib, f"ctc_beam_search_{_KERNEL_VARIANTS[log_probs.dtype][0]}")
    failed = []

    def chunk(b0, b1):
        if run(log_probs.data_ptr(), frames, classes, logits_len.data_ptr(), b0, b1, blank,
               beam, width, nbest, float(token_min_logp), float(beam_threshold),
               ctypes.byref(struct) if struct is not None else None, tokens.data_ptr(),
               times.data_ptr(), lengths.data_ptr(), count.data_ptr(), score.data_ptr(),
               acoustic.data_ptr(), lm.data_ptr(), tlm.data_ptr(), unk.data_ptr()):
            failed.append((b0, b1))

    # Utterances differ in length and in how many beams stay alive: small chunks.
    _in_parallel(chunk, batch, batch * frames * beam * 8, pieces=4)
    if failed:
        raise MemoryError("the beam search kernel could not allocate its beams")
    return tuple(x.numpy() for x in (count, tokens, times, lengths, score, acoustic, lm,
                                     tlm, unk))


def _rows_in(logits, compute):
    """``logits`` (B, T, C) detached, in ``compute``, each example's T x C values one
    block (the kernel's log-softmax reads example by example at a stride, so a chunk
    sliced from a longer tensor needs no copy)."""
    x = logits.detach()
    if x.dtype != compute:
        x = x.to(compute)
    frames, classes = x.shape[1], x.shape[2]
    if not ((frames <= 1 or x.stride(1) == classes) and x.stride(2) == 1):
        x = x.contiguous()
    return x


def decode_log_softmax(logits, logits_len, compute):
    """``(log_probs (B, T, C) compute, first_bad)`` for the searches: the kernel's
    log_softmax of CPU ``logits`` (any float dtype; threaded over the batch where it is
    large), and ``(b, t)`` of the first bad frame (within ``T_b``, a NaN in the row) or
    None. Not torch's: its threaded log_softmax leaves OpenMP's workers spinning for a
    millisecond after, on the cores the search threads need (a 16-frame chunk's call
    cost 1.4 ms of CPU); and a stream's chunks (:meth:`BeamStream.feed`) and the
    offline call on the same frames then get the same bits from the same row code."""
    batch, frames, classes = logits.shape
    x = _rows_in(logits, compute)
    size = batch * frames * classes
    log_probs = torch.empty(batch, frames, classes, dtype=compute)
    if not size:
        return log_probs, None
    bad = torch.empty(batch, frames, dtype=torch.uint8)
    lengths = logits_len.contiguous()
    run = getattr(_kernel_lib, f"ctc_log_softmax_batch_{_sfx(compute)}")
    size_of = x.element_size()
    found = []

    def rows(b0, b1):
        first = run(x.data_ptr() + b0 * x.stride(0) * size_of, x.stride(0), b1 - b0, frames,
                    classes, lengths.data_ptr() + 8 * b0,
                    log_probs.data_ptr() + b0 * frames * classes * size_of,
                    bad.data_ptr() + b0 * frames)
        if first >= 0:
            found.append(b0 * frames + first)

    _in_parallel(rows, batch, size)
    return log_probs, (divmod(min(found), frames) if found else None)


def spell_table(pieces) -> tuple | None:
    """ctc_decoder's ``_pieces`` (per class: does it start a word, its text) as the
    kernel's spelling table: ``(starts, offsets, bytes, their three addresses)``, each
    class's text UTF-8 at ``bytes[offsets[c]:offsets[c + 1]]``. None where a text holds
    "\\0", the byte that joins the words spelled."""
    if any("\0" in text for _, text in pieces):
        return None
    try:
        raw = [text.encode() for _, text in pieces]
    except UnicodeEncodeError:  # a lone surrogate: split_words spells it instead
        return None
    starts = np.array([bool(flag) for flag, _ in pieces], dtype=np.uint8)
    offsets = np.zeros(len(raw) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in raw])
    data = np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8).copy()
    return starts, offsets, data, (starts.ctypes.data, offsets.ctypes.data, data.ctypes.data)


def spell_words(tokens, table) -> list:
    """The words the kernel spells from ``tokens`` with :func:`spell_table`'s ``table``
    (the stream's partial() spells so; split_words' words, for the tests)."""
    assert _kernel_lib, "the kernel is not built"
    ids = np.ascontiguousarray(tokens, dtype=np.int64)
    widest = int(np.diff(table[1]).max(initial=0))
    out = np.zeros(len(ids) * (widest + 1) + 1, dtype=np.uint8)
    size = _kernel_lib.ctc_spell_words_f64(ids.ctypes.data, len(ids), *table[3],
                                           out.ctypes.data)
    text = out[:size].tobytes().decode()
    return text.split("\0") if text else []


class BeamStream:
    """ctc_decoder's prefix beam search over a batch whose frames arrive in chunks
    (``ctc_beam.c``'s stream: the beams, their history and what is committed live in
    the kernel's buffers between calls, which run the offline search's own frame
    code). ``words``: as :func:`beam_search`'s, kept alive by the stream; ``finished``
    (B,) bool numpy, the caller's, read at each chunk: examples that take no frames."""

    def __init__(self, batch: int, classes: int, blank: int, beam: int, width: int,
                 token_min_logp, beam_threshold, words, dtype, finished):
        self._handle = None  # (close() is safe whatever happens below)
        # (B,) bool numpy, the caller's: the examples that take no frames (kept, read
        # by every chunk's call)
        self._finished, self._finished_at = finished, finished.ctypes.data
        self.beam = beam
        self.sfx = _KERNEL_VARIANTS[dtype][0]
        self.dtype, self.batch, self.classes = dtype, batch, classes
        self.struct, self._keep = _words_struct(words)
        self._lib = _kernel_lib
        self._entry: dict = {}
        self._feed = getattr(_kernel_lib, f"ctc_beam_stream_feed_threads_{self.sfx}")
        self._partial = getattr(_kernel_lib, f"ctc_beam_stream_partial_{self.sfx}")
        # Kept between chunks: the chunk's log-probabilities and bad frames; partial()'s
        # room and outputs (the paths and what goes with them; the words' bytes).
        self.log_probs = torch.empty(0, dtype=dtype)
        self._bad = torch.empty(0, dtype=torch.uint8)
        self._room = np.zeros(2, dtype=np.int64)
        self._handle = getattr(_kernel_lib, f"ctc_beam_stream_open_{self.sfx}")(
            batch, classes, blank, beam, width, float(token_min_logp), float(beam_threshold),
            ctypes.byref(self.struct) if self.struct is not None else None)
        if not self._handle:
            raise MemoryError("the beam search kernel could not allocate its beams")
        self._partial_buffers(0, 0)

    def _call(self, name, *args):
        if name not in self._entry:  # (a ctypes lookup costs some microseconds)
            self._entry[name] = getattr(self._lib, f"ctc_beam_stream_{name}_{self.sfx}")
        return self._entry[name](self._handle, *args)

    def feed_as_is(self, logits, frames, horizon: int = 0):
        """:meth:`feed` of a chunk as it comes, its lengths' range checked by the kernel
        (see there), where ``logits`` is a CPU tensor (B, t, C) of the stream's dtype,
        batch and classes, each example's frames one block, and ``frames`` a CPU (B,)
        int64 tensor, one block; else False, nothing read (the decoders' checks then
        come first: this is the chunk a server feeds every 320 ms, in few steps)."""
        if not (type(logits) is torch.Tensor and logits.dtype == self.dtype
                and type(frames) is torch.Tensor and frames.dtype == torch.int64
                and logits.device.type == "cpu" and frames.device.type == "cpu"
                and logits.dim() == 3 and frames.dim() == 1
                and logits.shape[0] == frames.shape[0] == self.batch
                and logits.shape[2] == self.classes and logits.stride(2) == 1
                and (logits.shape[1] <= 1 or logits.stride(1) == self.classes)
                and frames.stride(0) == 1):
            return False
        return self._feed_at(logits.data_ptr(), logits.stride(0), logits.shape[1],
                             frames.data_ptr(), horizon)

    def feed(self, logits, frames, horizon: int = 0):
        """A chunk of CPU ``logits`` (B, t, C), any float dtype, and ``frames`` (B,)
        int64 CPU: :func:`decode_log_softmax`'s log-probabilities (the same row code,
        so the same bits as the offline call) into the stream's buffer, then the search
        of the first ``frames[b]`` of example b's; both in one kernel call on the
        threads. Returns None; or, nothing searched: the first bad frame ``(b, t)``
        (within the frames, a NaN or +inf logit or a row of -inf), or False where a
        ``frames[b]`` is outside [0, t] or above 0 for a finished example (``finished``,
        given at :meth:`__init__`). ``horizon`` > 0: beams that left the best one's path
        more than that many frames back are dropped after."""
        x = _rows_in(logits, self.dtype)
        return self._feed_at(x.data_ptr(), x.stride(0), x.shape[1], frames.data_ptr(),
                             horizon)

    def _feed_at(self, x_at: int, stride_b: int, t: int, frames_at: int, horizon: int):
        size = self.batch * t * self.classes
        if self.log_probs.numel() < size:  # grown as chunks grow
            self.log_probs = torch.empty(2 * size, dtype=self.dtype)
            self._bad = torch.empty(2 * self.batch * t, dtype=torch.uint8)
        # The library's own workers take the chunk's examples with this thread, from
        # counters they share (unequal examples balance themselves): a Python pool's
        # helper started some 56 us into a chunk, a fifth of its time on two threads.
        first = self._feed(self._handle, x_at, stride_b, t, frames_at, self._finished_at,
                           horizon, self.log_probs.data_ptr(), self._bad.data_ptr(),
                           _threads(self.batch, self.batch * t * self.beam * 8))
        if first == -1:
            raise MemoryError("the beam search kernel could not allocate its history")
        if first == -2:
            return False
        return divmod(first - 1, t) if first > 0 else None

    @staticmethod
    def pool(sfx: str = "f32") -> tuple:
        """The kernel's stream workers (of its ``sfx`` variant): how many started, the
        chunks handed to them and the times one of them joined a chunk."""
        out = (ctypes.c_int64 * 3)()
        getattr(_kernel_lib, f"ctc_beam_stream_pool_{sfx}")(out)
        return tuple(out)

    def held(self, b: int | None = None):
        """Example b's frames searched, tokens committed, frames of history held, and
        the bytes its state holds (every example's, ``(B, 4)``, for None)."""
        out = torch.empty(self.batch, 4, dtype=torch.long)
        self._call("held", out.data_ptr())
        return out if b is None else tuple(out[b].tolist())

    def _partial_buffers(self, paths: int, text: int) -> None:
        """partial()'s outputs with room for ``paths`` int64 and ``text`` bytes."""
        self._paths = np.zeros(paths, dtype=np.int64)
        self._text = np.zeros(text, dtype=np.uint8)
        self._room[:] = paths, text
        self._at = (self._room.ctypes.data, self._paths.ctypes.data, self._text.ctypes.data)

    def partial(self, spell=None):
        """What the stream's partial() shows anew: the examples searched further since
        they were last shown here (or never shown), then shown. None where there are
        none; else lists ``(index, committed, keep, at, cut, tails, text)``: example
        ``index[i]``'s best beam now has the tokens it had when last shown up to
        ``keep[i]`` (0 for one never shown, or reset), then ``tails[at[i]:at[i + 1]]``
        at frames ``tails[m + at[i]:m + at[i + 1]]`` (m = ``at[-1]``); its first
        ``committed[i]`` tokens are committed. With ``spell`` (:func:`spell_table`'s) the
        words of its whole path, joined by "\\0", are ``text[cut[i]:cut[i + 1]]`` (UTF-8
        bytes; else None). :meth:`reset` makes an example new again."""
        table = spell[3] if spell is not None else (None, None, None)
        while (size := self._partial(self._handle, *self._at[:2], *table, self._at[2])) < 0:
            if size == -2:
                raise MemoryError("the beam search kernel could not allocate its paths")
            # Room for twice what is needed: a reallocation now and then as paths grow.
            self._partial_buffers(max(self._paths.shape[0], 2 * int(self._room[0])),
                                  max(self._text.shape[0], 2 * int(self._room[1])))
        v = self._paths[:size].tolist()
        n = v[0]
        if not n:
            return None
        cut = v[4 * n + 3:5 * n + 4]
        return (v[2:n + 2], v[n + 2:2 * n + 2], v[2 * n + 2:3 * n + 2], v[3 * n + 2:4 * n + 3],
                cut, v[5 * n + 4:], self._text[:cut[n]].tobytes() if spell is not None else None)

    def unseen(self) -> None:
        """Every example as never shown: the next :meth:`partial` sends each whole path
        (for a caller that lost what the last one sent)."""
        self._call("unseen")

    def finish(self, nbest: int, examples) -> dict:
        """The n-best of each of ``examples`` (ascending indices) as
        :func:`beam_search`'s tuples, by example."""
        held = self.held().numpy()
        room = max(int((held[examples, 1] + held[examples, 2]).max(initial=0)), 1)
        tokens = np.empty((2, self.batch, nbest, room), dtype=np.int64)  # tokens, frames
        lengths = np.zeros((self.batch, nbest), dtype=np.int64)
        count = np.zeros(self.batch, dtype=np.int64)
        scores = np.zeros((5, self.batch, nbest), dtype=np.float64)
        score_at = [scores.ctypes.data + i * scores[0].nbytes for i in range(5)]
        # One call for each run of consecutive examples (all of them, or one).
        starts = [b for i, b in enumerate(examples) if i == 0 or examples[i - 1] != b - 1]
        ends = [b + 1 for i, b in enumerate(examples)
                if i + 1 == len(examples) or examples[i + 1] != b + 1]
        for b0, b1 in zip(starts, ends, strict=True):
            if self._call("finish", b0, b1, nbest, room, tokens.ctypes.data,
                          tokens[1].ctypes.data, lengths.ctypes.data, count.ctypes.data,
                          *score_at):
                raise MemoryError("the beam search kernel could not allocate its beams")
        return {b: [(tokens[0, b, n, :lengths[b, n]].tolist(),
                     tokens[1, b, n, :lengths[b, n]].tolist(),
                     *(float(x[b, n]) for x in scores), {}) for n in range(count[b])]
                for b in examples}

    def reset(self, b: int) -> None:
        if self._call("reset", b):
            raise MemoryError("the beam search kernel could not allocate its beams")

    def close(self) -> None:
        if self._handle:
            self._call("close")
            self._handle = None

    def __del__(self):
        self.close()


def _read_owned(folder: int, name: str) -> tuple[int, bytes]:
    """An open descriptor on the regular file ``name`` in the open ``folder``, and its
    bytes, if this user owns it and nobody else can write it; raises _Untrusted naming
    why otherwise (OSError if it is absent or not a regular file). Checked and read
    through one descriptor, never through a link, so a swap after the check changes
    nothing."""
    import stat

    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NONBLOCK", 0))  # a FIFO planted there must not block us
    fd = os.open(name, flags, dir_fd=folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{name} is not a regular file")
        why = _distrust(st, f"the cached file {name}")
        if why:
            raise _Untrusted(why)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return fd, b"".join(chunks)
    except BaseException:
        os.close(fd)
        raise


# Descriptors of loaded libraries, kept open: the loader knows a library by the name it
# was opened under (/proc/self/fd/N), so N must not be reused for another file.
_library_fds: list = []


def _load_verified(folder: int, name: str, path: Path):
    """The library ``name`` (at ``path``) in the open cache ``folder`` if this user owns it and its
    digest file, its bytes match that digest (recorded when it was built) and it has
    every entry point; else None. Raises _Untrusted when another user could have
    written either file. A truncated file would kill the process with SIGBUS once
    mapped, so nothing unverified is ever loaded."""
    import hashlib

    try:
        digest_fd, digest = _read_owned(folder, name + ".sha256")
        os.close(digest_fd)
        fd, data = _read_owned(folder, name)
    except OSError:  # absent, a link, not a regular file, unreadable
        return None
    if hashlib.sha256(data).hexdigest() != digest.decode(errors="replace").strip():
        os.close(fd)
        return None
    # The bytes just verified, by descriptor, so the file mapped is the file checked.
    fd_path = f"/proc/self/fd/{fd}"
    if not os.path.exists(fd_path):  # no /proc (not Linux): the name in the checked folder
        fd_path = str(path)
    try:
        lib = ctypes.CDLL(fd_path)
    except OSError:
        os.close(fd)
        return None
    _library_fds.append(fd)
    return lib if _bind_kernel(lib) else None


def _cpu_features() -> str:
    """What ``-march=native`` compiles for, as far as Python can tell: the feature flags
    and model of the CPU (Linux's /proc/cpuinfo), else the platform's processor name."""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor()
    wanted = ("flags", "Features", "model name", "CPU part", "cpu family", "model")
    lines = {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
             for line in text.splitlines() if ":" in line}
    return "\n".join(f"{k}={lines[k]}" for k in wanted if k in lines)


def _compile(compiler, flags, source, folder: Path):
    """Builds the library in ``folder`` (private to this process) and loads it;
    returns (library, its bytes)."""
    import subprocess

    sources = []
    for sfx, real, exp, log in _KERNEL_VARIANTS.values():
        src = folder / f"ctc_{sfx}.c"
        src.write_text(f"#define REAL {real}\n#define SFX {sfx}\n#define EXP {exp}\n"
                       f"#define LOG {log}\n" + source)
        sources.append(str(src))
    built = folder / "kernel.so"
    # Each variant is a separate translation unit; one shared library.
    subprocess.run([*compiler, *flags, *sources, "-o", str(built), "-lm"],
                   check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(built))
    if not _bind_kernel(lib):
        raise RuntimeError("the freshly built library lacks an entry point")
    return lib, built.read_bytes()


def _publish(folder: int, name: str, data: bytes, mode: int) -> None:
    """Writes ``data`` as ``name`` in the open ``folder`` under a fresh inode (a new
    file, then an atomic rename): a process that has the old file mapped keeps it."""
    import secrets

    temporary = f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                 mode, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)


def _build_kernel():
    """Compiles the kernel (once per source, compiler, flags and machine) into a cache and
    loads it with ctypes. A cached library that fails verification (truncated,
    foreign, missing a symbol, or another user's) is rebuilt once into a fresh file.
    A cache folder that another user could write is not used at all: a warning names
    it, and the kernel is built for this process alone. The build itself always runs
    in a private temporary folder. If building fails, a warning names why and the pure
    PyTorch backend runs."""
    import hashlib
    import platform
    import shlex
    import shutil
    import subprocess
    import tempfile
    import warnings

    # CC may carry arguments ("ccache gcc", "cc -O2"): split it as a shell would.
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc")]
    # -fno-trapping-math: no code here reads the floating-point exception flags, and
    # without it the compiler keeps a branch for every float select (no vector code).
    # -march=native: the vector loops at this CPU's width (AVX-512 where it has it: the
    # float32 forward pass 2.6x faster than at SSE2's); the cache key holds the CPU's
    # features, so a cache shared by machines never hands one another's library.
    # -ffp-contract=off: no fused multiply-adds the source did not write, on any compiler.
    # -pthread: the stream's worker threads (ctc_beam.c's pool).
    flags = ["-O3", "-std=c11", "-fno-trapping-math", "-ffp-contract=off", "-march=native",
             "-shared", "-fPIC", "-pthread",
             *shlex.split(os.environ.get("SEQ_LOSS_UTIL_CFLAGS", ""))]
    source = _source()
    key = hashlib.sha256("\0".join([source, str(compiler), platform.machine(),
                                    _cpu_features(), *flags]).encode()).hexdigest()[:16]
    name = f"ctc_kernel_{key}.so"
    folder = None
    try:
        cache, folder, why = _open_trusted_cache()
        if folder is not None:
            try:
                lib = _load_verified(folder, name, cache / name)
            except _Untrusted as e:  # our folder, someone else's file: replace it
                warnings.warn(f"seq_loss_util: not loading {cache / name}: {e}; rebuilding it",
                              KernelCacheWarning, stacklevel=3)
            else:
                if lib is not None:
                    return lib
        else:
            warnings.warn(f"seq_loss_util: not using the kernel cache {cache}: {why}, so "
                          "another user could plant a library there; building the kernel "
                          "into a private folder for this process instead (make it yours alone, "
                          "for example chmod go-w, or set SEQ_LOSS_UTIL_CACHE to a folder "
                          "only you own and can write)",
                          KernelCacheWarning, stacklevel=3)
        if compiler[0] is None:
            raise RuntimeError("no C compiler found (set CC)")
        # The library stays mapped after its file is removed with the folder, so
        # nothing is left behind, even if the process is killed later.
        with tempfile.TemporaryDirectory(prefix="seq_loss_util-build-") as tmp:
            try:
                lib, data = _compile(compiler, flags, source, Path(tmp))
            except subprocess.CalledProcessError:
                # A compiler without -march=native (some cross or Apple ones): the
                # portable build, under the same key (it runs on this machine too).
                portable = [f for f in flags if f != "-march=native"]
                if portable == flags:
                    raise
                lib, data = _compile(compiler, portable, source, Path(tmp))
        if folder is not None:
            try:
                _publish(folder, name, data, 0o755)
                _publish(folder, name + ".sha256", hashlib.sha256(data).hexdigest().encode(),
                         0o644)
            except OSError:  # a read-only cache, a full disk: this process has its kernel
                pass
        return lib
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        warnings.warn(f"seq_loss_util: the compiled CTC kernel is unavailable ({detail.strip()}"
                      "); using the pure PyTorch implementation", RuntimeWarning, stacklevel=3)
        return False
    finally:
        if folder is not None:
            os.close(folder)


def backend():
    """The compiled backend, built and loaded on first use, or None (no compiler, or
    the build failed: a warning said why)."""
    global _kernel_lib
    if _kernel_lib is None:
        _kernel_lib = _build_kernel()
    return KernelBackend if _kernel_lib else None


def _threads(batch: int, work: int) -> int:
    """Threads for ``work`` over ``batch`` examples: torch's thread count, one for
    small problems (threads cost more than they save)."""
    threads = min(torch.get_num_threads(), batch)
    return 1 if threads <= 1 or work < 50_000 else threads


def _pool(threads: int):
    global _kernel_pool
    if _kernel_pool is None or _kernel_pool._max_workers < threads:
        from concurrent.futures import ThreadPoolExecutor

        _kernel_pool = ThreadPoolExecutor(max_workers=threads)
    return _kernel_pool


def _in_parallel(fn, batch: int, work: int, pieces: int = 1) -> None:
    """Runs ``fn(b0, b1)`` over batch chunks on torch's thread count, ``pieces`` chunks
    per thread (more where examples take unequal time). ctypes releases the GIL during
    the call, so the chunks run at once on separate cores."""
    threads = _threads(batch, work)
    if threads == 1:
        fn(0, batch)
        return
    chunks = min(batch, threads * pieces)
    bounds = [batch * i // chunks for i in range(chunks + 1)]
    pairs = zip(bounds, bounds[1:], strict=False)  # consecutive bounds
    for future in [_pool(threads).submit(fn, lo, hi) for lo, hi in pairs]:
        future.result()


def _sfx(dtype) -> str:
    return _KERNEL_VARIANTS[dtype][0]


def _first_frame(logits):
    """``(first, compute)``: the dtype the kernel computes in for these logits, and
    logits the checks may read each example's first frame of in it (only that frame is
    converted from other dtypes)."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return (logits if logits.dtype == compute else logits[:, :1].to(compute)), compute


class KernelBackend:
    """The compiled kernel on CPU tensors, float32 or float64. It also does what
    surrounds the recursions (``fuses_wrapper``): CtcLossModule's label preparation and
    checks into one verdict word, the log-softmax, the loss and the gradient's scale, in
    C calls instead of some 80 small ATen ops a training step (triton_wrapper.py's
    kernels, the same semantics)."""

    name = "c-kernel"
    precomputes_beta = False  # beta is recomputed in the backward
    fuses_wrapper = True
    verdict_passes = staticmethod(verdict_passes)

    @staticmethod
    def prepare_batch_first(logits, labels, logits_len, labels_len, blank: int,
                            shift_labels: bool):
        """``(aug (B, 2U + 1) int64, aug_len (B,), frames (B,), norm (B,) float32,
        verdict (1,) int32)``, as triton_wrapper.prepare_batch_first."""
        batch, frames, classes = logits.shape
        width = labels.shape[1]
        first, compute = _first_frame(logits)
        labels = labels if labels.dtype == torch.long else labels.long()
        lengths = [x if x is None or x.dtype == torch.long else x.long()
                   for x in (labels_len, logits_len)]
        aug = torch.empty(batch, 2 * width + 1, dtype=torch.long)
        aug_len = torch.empty(batch, dtype=torch.long)
        frames_of = torch.empty(batch, dtype=torch.long)
        norm = torch.empty(batch, dtype=torch.float32)
        verdict = torch.zeros(1, dtype=torch.int32)
        lengths = [x.contiguous() if x is not None else None for x in lengths]
        getattr(_kernel_lib, f"ctc_prepare_{_sfx(compute)}")(
            labels.data_ptr(), labels.stride(0), labels.stride(1),
            lengths[0].data_ptr() if lengths[0] is not None else None,
            first.data_ptr(), first.stride(0), first.stride(2),
            lengths[1].data_ptr() if lengths[1] is not None else None,
            batch, width, frames, classes, int(blank), int(bool(shift_labels)),
            aug.data_ptr(), aug_len.data_ptr(), frames_of.data_ptr(), norm.data_ptr(),
            verdict.data_ptr())
        return aug, aug_len, frames_of, norm, verdict

    @staticmethod
    def check_augmented(labels, labels_len, logits, logits_len) -> int:
        """ctc_loss's checks of its blank-augmented labels ``(B, L)`` and lengths as one
        verdict word (``verdict.py``), in one C pass instead of some 20 ATen ops."""
        batch, frames, classes = logits.shape
        first, compute = _first_frame(logits)
        labels = labels if labels.dtype == torch.long else labels.long()
        labels_len, logits_len = (x.long().contiguous() for x in (labels_len, logits_len))
        verdict = (ctypes.c_int32 * 1)()
        getattr(_kernel_lib, f"ctc_check_augmented_{_sfx(compute)}")(
            labels.data_ptr(), labels.stride(0), labels.stride(1), labels_len.data_ptr(),
            first.data_ptr(), first.stride(0), first.stride(2), logits_len.data_ptr(),
            batch, labels.shape[1], frames, classes, ctypes.addressof(verdict))
        return verdict[0]

    @staticmethod
    def loss_forward(logits, labels, labels_len, logits_len, exact: bool,
                     zero_infinity: bool, check: bool):
        """ctc_loss's forward pass in one C call, for a small float32 batch on one
        thread: ``(loss, log_probs, alpha, counted, poisoned)`` as ``_loss_forward``
        returns them, or None where the inputs do not qualify or (with ``check``) the
        verdict of ``check_augmented`` does not pass, before any label id is used; the
        caller then takes the general path, which names the fault. The inputs must be
        tensors of the right ranks and batch size (ctc_loss's first checks): logits
        ``(B, T, C)``, labels ``(B, L)``, lengths ``(B,)``."""
        batch, frames, classes = logits.shape
        width = labels.shape[1]
        if not (logits.dtype == torch.float32 and batch and classes
                and batch * frames * classes < 1 << 16
                # where _in_parallel would split the recursion over threads, it does
                and (torch.get_num_threads() <= 1 or batch * frames * width < 50_000)
                and labels.dtype == labels_len.dtype == logits_len.dtype == torch.long
                and logits.is_contiguous() and labels.is_contiguous()
                and labels_len.is_contiguous() and logits_len.is_contiguous()):
            return None
        log_probs = torch.empty_like(logits)  # (B, T, C)
        alpha = torch.empty(batch, frames, width)  # (B, T, L)
        loss = torch.empty(batch)
        # two tensors, not views of one: an operator's outputs must not alias
        counted = torch.empty(batch, dtype=torch.bool)
        poisoned = torch.empty(batch, dtype=torch.bool)
        warn = exact and not zero_infinity
        verdict = getattr(_kernel_lib, f"ctc_loss_forward_{_sfx(logits.dtype)}")(
            logits.data_ptr(), frames, classes, labels.data_ptr(), width,
            labels_len.data_ptr(), logits_len.data_ptr(), batch, int(bool(check)),
            fault_bits(warn), int(bool(exact)), int(bool(zero_infinity)),
            log_probs.data_ptr(), alpha.data_ptr(), loss.data_ptr(), counted.data_ptr(),
            poisoned.data_ptr())
        if verdict == -1:
            raise MemoryError("the CTC kernel could not allocate its scratch rows")
        if not verdict_passes(verdict, warn):
            return None
        return loss, log_probs, alpha, counted, poisoned

    @staticmethod
    def loss_backward(log_probs, labels, labels_len, logits_len, alpha, counted, poisoned,
                      grad_loss):
        """d loss / d logits ``(B, T, C)`` for :meth:`loss_forward`'s outputs, in one C
        call (the scale and the gradient), or None where :meth:`loss_forward` would not
        have applied (the caller takes :meth:`backward`)."""
        batch, frames, classes = log_probs.shape
        if not (log_probs.dtype == torch.float32 and batch and alpha.dim() == 3
                and (torch.get_num_threads() <= 1
                     or batch * frames * (labels.shape[1] + classes) < 50_000)
                and labels.dtype == labels_len.dtype == logits_len.dtype == torch.long
                and log_probs.is_contiguous() and labels.is_contiguous()
                and alpha.is_contiguous() and labels_len.is_contiguous()
                and logits_len.is_contiguous() and grad_loss.dim() == 1):
            return None
        grad_loss = grad_loss if grad_loss.dtype == torch.float32 else grad_loss.float()
        grad = torch.empty_like(log_probs)  # written in full by the kernel
        if _kernel_lib.ctc_loss_backward_f32(
                log_probs.data_ptr(), frames, classes, labels.data_ptr(), labels.shape[1],
                labels_len.data_ptr(), logits_len.data_ptr(), alpha.data_ptr(),
                grad_loss.data_ptr(), grad_loss.stride(0), counted.data_ptr(),
                poisoned.data_ptr(), batch, grad.data_ptr()):
            raise MemoryError("the CTC kernel could not allocate its scratch row")
        return grad

    @staticmethod
    def log_softmax(logits, logits_len):
        """``(log_probs (B, T, C), bad (B, T) bool)`` in the compute dtype: a frame is
        bad when it is within ``T_b`` and its log_softmax holds a NaN."""
        batch, frames, classes = logits.shape
        compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
        bad = torch.empty(batch, frames, dtype=torch.bool)
        if compute == torch.float32 and batch * frames * classes < 1 << 16:
            # Small inputs: one C pass (torch's call and a second scan cost more than the
            # arithmetic); larger ones take torch's threaded, vectorised log_softmax.
            x = logits.to(compute).contiguous()
            log_probs = torch.empty_like(x)
            _kernel_lib.ctc_log_softmax_f32(x.data_ptr(), frames, classes,
                                            logits_len.data_ptr(), 0, batch,
                                            log_probs.data_ptr(), bad.data_ptr())
            return log_probs, bad
        log_probs = torch.log_softmax(logits.to(compute), dim=2).contiguous()
        if batch and frames:
            run = getattr(_kernel_lib, f"ctc_bad_frames_{_sfx(compute)}")
            _in_parallel(lambda b0, b1: run(
                log_probs.data_ptr(), frames, classes, logits_len.data_ptr(), b0, b1,
                bad.data_ptr()), batch, batch * frames * classes)
        return log_probs, bad

    @staticmethod
    def finish_loss(final_a, final_b, bad, labels_len, logits_len, exact: bool,
                    zero_infinity: bool):
        """``(loss, counted, poisoned)``, each ``(B,)``, from the final states (views of
        :meth:`forward`'s ``(B, 2)`` finals) and :meth:`log_softmax`'s bad frames."""
        batch, frames = bad.shape
        loss = final_a.new_empty(batch)
        counted = torch.empty(batch, dtype=torch.bool)
        poisoned = torch.empty(batch, dtype=torch.bool)
        if not batch:
            return loss, counted, poisoned
        assert final_a.stride(0) == 2 and final_b.data_ptr() == final_a.data_ptr() + \
            final_a.element_size(), "final_a and final_b must be forward()'s finals[:, 0:2]"
        finals = final_a.as_strided((batch, 2), (2, 1))  # the (B, 2) tensor they view
        getattr(_kernel_lib, f"ctc_finish_loss_{_sfx(final_a.dtype)}")(
            finals.data_ptr(), bad.data_ptr(), labels_len.data_ptr(), logits_len.data_ptr(),
            batch, frames, int(bool(exact)), int(bool(zero_infinity)), loss.data_ptr(),
            counted.data_ptr(), poisoned.data_ptr())
        return loss, counted, poisoned

    @staticmethod
    def forward(log_probs, labels, labels_len, logits_len):
        batch, t_max, classes = log_probs.shape  # all inputs contiguous (CtcLoss.forward)
        width = labels.shape[1]
        alpha = log_probs.new_empty(batch, t_max, width)  # (B, T', L)
        finals = log_probs.new_empty(batch, 2)
        run = getattr(_kernel_lib, f"ctc_forward_{_sfx(log_probs.dtype)}")
        _in_parallel(lambda b0, b1: run(
            log_probs.data_ptr(), t_max, classes, labels.data_ptr(), width,
            labels_len.data_ptr(), logits_len.data_ptr(), b0, b1, alpha.data_ptr(),
            finals.data_ptr()), batch, batch * t_max * width)
        return (alpha,), finals[:, 0], finals[:, 1]

    @staticmethod
    def backward(state, log_probs, labels, labels_len, logits_len, grad_loss, counted,
                 poisoned):
        """d loss / d logits ``(B, T', C)`` for the incoming ``grad_loss`` ``(B,)``: 0
        where the loss is not counted (``counted``), NaN on the valid frames of a
        ``poisoned`` example that has a gradient."""
        (alpha,) = state
        batch, t_max, classes = log_probs.shape
        width = labels.shape[1]
        grad_loss = grad_loss if grad_loss.dtype == log_probs.dtype else \
            grad_loss.to(log_probs.dtype)
        scale = log_probs.new_empty(batch)
        getattr(_kernel_lib, f"ctc_grad_scale_{_sfx(log_probs.dtype)}")(
            grad_loss.data_ptr(), grad_loss.stride(0) if grad_loss.dim() else 0,
            counted.data_ptr(), poisoned.data_ptr(), batch, scale.data_ptr())
        grad = torch.empty_like(log_probs)  # (B, T', C), written in full by the kernel
        run = getattr(_kernel_lib, f"ctc_backward_{_sfx(log_probs.dtype)}")
        _in_parallel(lambda b0, b1: run(
            log_probs.data_ptr(), t_max, classes, labels.data_ptr(), width,
            labels_len.data_ptr(), logits_len.data_ptr(), alpha.data_ptr(), scale.data_ptr(),
            b0, b1, grad.data_ptr()), batch, batch * t_max * (width + classes))
        return grad

    @staticmethod
    def viterbi(log_probs, labels, labels_len, logits_len):
        batch, t_max, classes = log_probs.shape  # all inputs contiguous (forced_align)
        width = labels.shape[1]
        back = torch.empty(batch, t_max, width, dtype=torch.uint8)  # (B, T', L): 1 byte each
        path = torch.empty(batch, t_max, dtype=torch.long)
        score = log_probs.new_empty(batch)
        run = getattr(_kernel_lib, f"ctc_viterbi_{_KERNEL_VARIANTS[log_probs.dtype][0]}")
        _in_parallel(lambda b0, b1: run(
            log_probs.data_ptr(), t_max, classes, labels.data_ptr(), width,
            labels_len.data_ptr(), logits_len.data_ptr(), b0, b1, back.data_ptr(),
            path.data_ptr(), score.data_ptr()), batch, batch * t_max * width)
        return path, score


def viterbi_band(emissions, labels, lo, width: int, chunks=None, backward_chunks=None,
                 prove=None, threads: int = 2):
    """The banded Viterbi of one example (cpu.c's ``ctc_viterbi_band``): ``emissions``
    ``(T, C)`` float32 or float64 log-scores (or ``chunks``, an iterable of such blocks
    in order, whose rows sum to T = ``lo.numel()``), ``labels`` ``(S,)`` int64 states,
    ``lo`` ``(T,)`` int64 non-decreasing band starts, ``width`` states. Returns
    ``(path (T,) int64, score, exact)``, path all -1 and score -inf where the band holds
    no path to a final state. ``exact``: no path that leaves the band anywhere can score
    as much (each such path scores at most the best score at a state it leaves from, plus
    the largest emission of every frame after), so the path is the full Viterbi's.

    ``backward_chunks`` (``(first frame, block)`` pairs, last block first) run the banded
    backward pass that the bound needs, after the forward pass where ``prove(path)`` is
    true. With ``threads`` 2 it runs on a second thread while the forward pass runs (the
    kernel releases the GIL) and the bound is always checked (``prove`` is not asked):
    the pair costs about one pass's time on two cores instead of two. The iterables are read under one lock, so a
    callable behind them is never entered by both threads at once."""
    T = lo.numel()
    labels, lo = labels.contiguous(), lo.contiguous()
    width = int(width)
    if backward_chunks is not None and int(threads) > 1 and T:
        lock = threading.Lock()
        grad = torch.is_grad_enabled()

        def backward():
            with torch.set_grad_enabled(grad):  # grad mode is per thread: keep the caller's
                return _band_backward(_locked(backward_chunks, lock), labels, lo, width, T)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(backward)
            try:
                forward = _band_forward(emissions, chunks, labels, lo, width, T, lock)
            except BaseException:
                concurrent.futures.wait([pending])  # the forward pass's error is the one raised
                raise
            entries = pending.result()
        path, score, exits, frame_max = forward
        if exits is None:
            return path, score, False
        return path, score, _proven(score, exits, entries, frame_max, T)
    path, score, exits, frame_max = _band_forward(emissions, chunks, labels, lo, width, T)
    if exits is None or backward_chunks is None or (prove is not None and not prove(path)):
        return path, score, False
    entries = _band_backward(backward_chunks, labels, lo, width, T)
    return path, score, _proven(score, exits, entries, frame_max, T)


def _locked(iterable, lock):
    """``iterable``'s items, each fetched holding ``lock``."""
    items = iter(iterable)
    while True:
        with lock:
            item = next(items, _DONE)
        if item is _DONE:
            return
        yield item


_DONE = object()


def _band_forward(emissions, chunks, labels, lo, width, T, lock=None):
    """The forward pass and backtrace: ``(path, score, exits, frame_max)``, ``exits``
    None where the band holds no path."""
    blocks = [emissions] if chunks is None else chunks
    if lock is not None:
        blocks = _locked(blocks, lock)
    row = (width + 3) // 4
    back = torch.empty(T * row, dtype=torch.uint8)
    exits = None
    frame_max = []
    dtype, carry, t0, sfx = None, None, 0, None
    for block in blocks:
        block = block.contiguous()
        if dtype is None:
            dtype = block.dtype
            sfx = _KERNEL_VARIANTS[dtype][0]
            carry = torch.empty(max(width, 1), dtype=dtype)
            exits = torch.empty(T, dtype=dtype)
        if block.dtype != dtype or block.dim() != 2:
            raise ValueError("every chunk must be 2-D (frames, C) of one dtype")
        assert carry is not None and exits is not None
        t1 = t0 + block.shape[0]
        if t1 > T:
            raise ValueError(f"the chunks hold more frames than the band ({T})")
        getattr(_kernel_lib, f"ctc_viterbi_band_{sfx}")(
            block.data_ptr(), t0, t1, block.shape[1], labels.data_ptr(), labels.numel(),
            lo.data_ptr(), width, carry.data_ptr(), back.data_ptr() + t0 * row,
            exits.data_ptr() + t0 * exits.element_size())
        frame_max.append(block.amax(1).double())
        t0 = t1
    if t0 != T:
        raise ValueError(f"the chunks hold {t0} frames, the band {T}")
    path = torch.full((T,), -1, dtype=torch.long)
    S = labels.numel()
    lost = path, -math.inf, None, None
    if carry is None or not T:
        return lost
    end_lo = int(lo[T - 1])
    finals = [(float(carry[s - end_lo]), s) for s in (S - 1, S - 2)
              if 0 <= s - end_lo < width and s >= 0]
    if not finals:
        return lost
    score, end = max(finals, key=lambda x: (x[0], x[1]))
    if score == -math.inf:
        return lost
    if getattr(_kernel_lib, f"ctc_band_backtrace_{sfx}")(back.data_ptr(), T, lo.data_ptr(),
                                                         width, end, path.data_ptr()):
        return torch.full((T,), -1, dtype=torch.long), -math.inf, None, None
    return path, score, exits, frame_max


def _band_backward(backward_chunks, labels, lo, width, T):
    """The banded backward pass: per frame, the best backward score of a state a path
    can come back into the band at."""
    entries, back_carry, t1 = None, None, T
    for t0, block in backward_chunks:
        block = block.contiguous()
        if entries is None:
            entries = torch.empty(T, dtype=block.dtype)
            back_carry = torch.empty(max(width, 1), dtype=block.dtype)
        if t0 + block.shape[0] != t1 or block.dtype != entries.dtype:
            raise ValueError("the backward chunks must come in descending order, of one dtype")
        getattr(_kernel_lib, f"ctc_viterbi_band_back_{_KERNEL_VARIANTS[block.dtype][0]}")(
            block.data_ptr(), t0, t1, T, block.shape[1], labels.data_ptr(), labels.numel(),
            lo.data_ptr(), width, back_carry.data_ptr(),
            entries.data_ptr() + t0 * entries.element_size())
        t1 = t0
    if t1 != 0:
        raise ValueError(f"the backward chunks end at frame {t1}, not 0")
    return entries


def _proven(score, exits, entries, frame_max, T) -> bool:
    """Whether no path that leaves the band scores as much as ``score``."""
    if T < 3:
        return True
    # A path outside the band somewhere leaves it first at some frame a (from a state
    # whose forward score is at most exits[a]) and comes back last at some frame b + 1
    # (to a state whose backward score is at most entries[b + 1]); frames a..b add at
    # most their largest emissions. No such path reaches the band's best: exact.
    prefix = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cat(frame_max).cumsum(0)])
    leave = exits.double()[1:T - 1] - prefix[1:T - 1]          # a = 1 .. T - 2
    come = prefix[2:T] + entries.double()[2:T]                  # b + 1 = 2 .. T - 1
    bound = (torch.cummax(leave, 0).values + come).max().item()
    return bound < score
