"""The compiled CPU kernel of seq_loss_util's CTC loss: build, cache, load, run.

``cpu.c`` beside this file is compiled once per source, compiler and machine with the
system C compiler (``cc``, or ``$CC``) into a cache folder, then loaded with ctypes.
:func:`backend` returns :class:`KernelBackend`, whose ``forward``, ``backward`` and
``viterbi`` take the same arguments as seq_loss_util's PyTorch backend, or None when
no kernel can be had (seq_loss_util then runs its PyTorch backend).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch


def _source() -> str:
    return (Path(__file__).with_name("cpu.c")).read_text()


_KERNEL_VARIANTS = {torch.float32: ("f32", "float", "expf", "logf"),
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
        user = os.getuid() if hasattr(os, "getuid") else "user"
        return Path(tempfile.gettempdir()) / f"seq_loss_util-{user}", True


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


def _trusted_cache_dir() -> tuple[Path, str | None]:
    """The cache folder, made if missing, and why it cannot be trusted (None if it can)."""
    import stat

    cache, shared_tmp = _kernel_cache_dir()
    # 0700 whatever the umask: a folder we make is never one others can write. In the
    # temporary directory another user may have made it first, so it is checked after.
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        cache.mkdir(mode=0o700)
    except FileExistsError:
        pass
    # In the shared temporary directory the name is predictable: a link planted there
    # could lead anywhere, so it is refused rather than followed.
    st = os.lstat(cache) if shared_tmp else os.stat(cache)
    if stat.S_ISLNK(st.st_mode):
        return cache, f"the cache folder {cache} is a symbolic link in a shared folder"
    if not stat.S_ISDIR(st.st_mode):
        return cache, f"the cache folder {cache} is not a folder"
    return cache, _distrust(st, f"the cache folder {cache}")


def _bind_kernel(lib) -> bool:
    """Declares every entry point's arguments; False if the library lacks one."""
    import ctypes

    p, i64 = ctypes.c_void_p, ctypes.c_int64
    signatures = {"ctc_forward": [p, i64, i64, p, i64, p, p, i64, i64, p, p],
                  "ctc_backward": [p, i64, i64, p, i64, p, p, p, p, i64, i64, p],
                  "ctc_viterbi": [p, i64, i64, p, i64, p, p, i64, i64, p, p, p]}
    try:
        for sfx, *_ in _KERNEL_VARIANTS.values():
            for name, argtypes in signatures.items():
                getattr(lib, f"{name}_{sfx}").argtypes = argtypes
    except AttributeError:
        return False
    return True


def _read_owned(path: Path) -> tuple[int, bytes]:
    """An open descriptor on ``path`` and its bytes, if this user owns it and nobody
    else can write it; raises PermissionError naming why otherwise. Checked and read
    through one descriptor, never a link, so a swap after the check changes nothing."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        why = _distrust(os.fstat(fd), f"the cached file {path}")
        if why:
            raise PermissionError(why)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return fd, b"".join(chunks)
    except BaseException:
        os.close(fd)
        raise


def _load_verified(path: Path):
    """The library at ``path`` if this user owns it and its digest file, its bytes
    match that digest (recorded when it was built) and it has every entry point; else
    None. Raises PermissionError when another user could have written either file.
    A truncated file would kill the process with SIGBUS once mapped, so nothing
    unverified is ever loaded."""
    import ctypes
    import hashlib

    try:
        digest_fd, digest = _read_owned(path.with_name(path.name + ".sha256"))
        os.close(digest_fd)
        fd, data = _read_owned(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise
    except OSError:  # a link (O_NOFOLLOW), unreadable, ...
        return None
    try:
        if hashlib.sha256(data).hexdigest() != digest.decode(errors="replace").strip():
            return None
        # The bytes just verified, by descriptor where the system names one, so the
        # file mapped is the file checked.
        fd_path = f"/proc/self/fd/{fd}"
        lib = ctypes.CDLL(fd_path if os.path.exists(fd_path) else str(path))
    except OSError:
        return None
    finally:
        os.close(fd)
    return lib if _bind_kernel(lib) else None


def _compile(compiler, flags, source, folder: Path):
    """Builds the library and its digest file in ``folder`` (private to this process)
    and loads it; returns (library, its path, the digest file's path)."""
    import ctypes
    import hashlib
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
    built.chmod(0o755)  # whatever the umask: nobody else may write what we will load
    digest = folder / "kernel.so.sha256"
    digest.write_text(hashlib.sha256(built.read_bytes()).hexdigest())
    digest.chmod(0o644)
    lib = ctypes.CDLL(str(built))
    if not _bind_kernel(lib):
        raise RuntimeError("the freshly built library lacks an entry point")
    return lib, built, digest


def _build_kernel():
    """Compiles the kernel (once per source, compiler and machine) into a cache and
    loads it with ctypes. A cached library that fails verification (truncated,
    foreign, missing a symbol) is rebuilt once into a fresh file. A cache folder that
    another user could write is not used at all: a warning names it, and the kernel is
    built into a private temporary folder for this process. If building fails, a
    warning names why and the pure PyTorch backend runs."""
    import hashlib
    import platform
    import shlex
    import shutil
    import subprocess
    import tempfile
    import warnings

    # CC may carry arguments ("ccache gcc", "cc -O2"): split it as a shell would.
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc")]
    flags = ["-O3", "-std=c11", "-shared", "-fPIC"]
    source = _source()
    key = hashlib.sha256("\0".join([source, str(compiler), platform.machine(),
                                    *flags]).encode()).hexdigest()[:16]
    try:
        cache, why = _trusted_cache_dir()
        target = cache / f"ctc_kernel_{key}.so"
        if why is None:
            try:
                lib = _load_verified(target)
            except PermissionError as e:  # our folder, someone else's file: replace it
                why = str(e)
                warnings.warn(f"seq_loss_util: not loading {target}: {why}; rebuilding it",
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
            cache = None
        if compiler[0] is None:
            raise RuntimeError("no C compiler found (set CC)")
        if cache is None:
            # The library stays mapped after its file is removed, so nothing is left
            # behind, even if the process is killed.
            with tempfile.TemporaryDirectory(prefix="seq_loss_util-") as tmp:
                return _compile(compiler, flags, source, Path(tmp))[0]
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            lib, built, digest = _compile(compiler, flags, source, Path(tmp))
            # Publish under fresh inodes (atomic renames): a process that has the old
            # file mapped keeps it; the next process finds the new one and its digest.
            os.replace(built, target)
            os.replace(digest, target.with_name(target.name + ".sha256"))
        return lib
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        warnings.warn(f"seq_loss_util: the compiled CTC kernel is unavailable ({detail.strip()}"
                      "); using the pure PyTorch implementation", RuntimeWarning, stacklevel=3)
        return False


def backend():
    """The compiled backend, built and loaded on first use, or None (no compiler, or
    the build failed: a warning said why)."""
    global _kernel_lib
    if _kernel_lib is None:
        _kernel_lib = _build_kernel()
    return KernelBackend if _kernel_lib else None


def _in_parallel(fn, batch: int, work: int) -> None:
    """Runs ``fn(b0, b1)`` over batch chunks on torch's thread count. ctypes releases
    the GIL during the call, so the chunks run at once on separate cores."""
    global _kernel_pool
    threads = min(torch.get_num_threads(), batch)
    if threads <= 1 or work < 50_000:  # small problems: threads cost more than they save
        fn(0, batch)
        return
    if _kernel_pool is None or _kernel_pool._max_workers < threads:
        from concurrent.futures import ThreadPoolExecutor

        _kernel_pool = ThreadPoolExecutor(max_workers=threads)
    bounds = [batch * i // threads for i in range(threads + 1)]
    for future in [_kernel_pool.submit(fn, lo, hi) for lo, hi in zip(bounds, bounds[1:])]:
        future.result()


class KernelBackend:
    """The compiled kernel on CPU tensors, float32 or float64."""

    name = "c-kernel"

    @staticmethod
    def forward(log_probs, labels, labels_len, logits_len):
        batch, t_max, classes = log_probs.shape  # all inputs contiguous (CtcLoss.forward)
        width = labels.shape[1]
        alpha = log_probs.new_empty(batch, t_max, width)  # (B, T', L)
        finals = log_probs.new_empty(batch, 2)
        run = getattr(_kernel_lib, f"ctc_forward_{_KERNEL_VARIANTS[log_probs.dtype][0]}")
        _in_parallel(lambda b0, b1: run(
            log_probs.data_ptr(), t_max, classes, labels.data_ptr(), width,
            labels_len.data_ptr(), logits_len.data_ptr(), b0, b1, alpha.data_ptr(),
            finals.data_ptr()), batch, batch * t_max * width)
        return (alpha,), finals[:, 0], finals[:, 1]

    @staticmethod
    def backward(state, log_probs, labels, labels_len, logits_len, scale):
        (alpha,) = state
        batch, t_max, classes = log_probs.shape
        width = labels.shape[1]
        scale = scale.contiguous()
        grad = torch.empty_like(log_probs)  # (B, T', C), written in full by the kernel
        run = getattr(_kernel_lib, f"ctc_backward_{_KERNEL_VARIANTS[log_probs.dtype][0]}")
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
