"""The compiled kernel's loader under faults. Each test builds the fault, then runs a
fresh Python process (a crash or hang there cannot take the test run down) and checks
that it lives, uses the kernel, and says nothing alarming."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from optional_deps import unavailable

ROOT = Path(__file__).resolve().parents[1]
PROBE = textwrap.dedent("""
    import warnings
    warnings.simplefilter("error")  # a fallback warning fails the probe
    import torch
    import seq_loss_util as S
    labels = S.to_blank_augmented_labels({"SEQ_DATA": torch.tensor([[1, 2]]),
                                          "SEQ_LEN": torch.tensor([2])}, 0)
    loss = S.ctc_loss(labels["SEQ_DATA"], labels["SEQ_LEN"], torch.zeros(1, 5, 4),
                      torch.tensor([5]), exact=True)
    print(S.backend(), round(loss.item(), 4))
""")


@pytest.fixture(autouse=True, scope="module")
def compiler():
    if shutil.which(os.environ.get("CC", "cc").split()[0]) is None:
        unavailable("no C compiler to build the kernel with")


def run(code=PROBE, env=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEQ_LOSS_UTIL_KERNEL": "1", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# The parent's side of a fork test: the child's exit status, or "child hung" after 30 s.
WAIT_FOR_CHILD = textwrap.dedent("""
    deadline = time.time() + 30
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("child exit", os.waitstatus_to_exitcode(status))
            sys.exit(0)
        time.sleep(0.05)
    os.kill(pid, 9)
    print("child hung")
    sys.exit(1)
""")


def uniform_loss():
    # 5 frames of uniform scores over C = 4 classes: every frame sequence has
    # probability 4**-5, and 35 of them collapse to "1 2" (counted by enumeration).
    import math

    return round(5 * math.log(4) - math.log(35), 4)


def assert_kernel_ran(result):
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split() == ["c-kernel", str(uniform_loss())], result.stdout


def library(cache: Path) -> Path:
    (lib,) = cache.glob("ctc_kernel_*.so")
    return lib


@pytest.fixture
def cache(tmp_path):
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path)}))  # a good build
    return tmp_path


def test_truncated_library_is_rebuilt(cache):
    lib = library(cache)
    size, inode = lib.stat().st_size, lib.stat().st_ino
    with open(lib, "r+b") as f:
        f.truncate(size // 2)  # as a killed build or a full disk leaves it
    result = run(env={"SEQ_LOSS_UTIL_CACHE": str(cache)})
    assert result.returncode != -signal.SIGBUS
    assert_kernel_ran(result)
    assert library(cache).stat().st_size == size and library(cache).stat().st_ino != inode
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(cache)}))  # and stays good


def test_foreign_file_is_rebuilt(cache):
    library(cache).write_bytes(b"this is not a shared library\n")
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(cache)}))
    assert library(cache).read_bytes()[:4] == b"\x7fELF"


def test_library_missing_a_symbol_is_rebuilt(cache, tmp_path_factory):
    import hashlib

    lib = library(cache)
    empty = tmp_path_factory.mktemp("empty")
    (empty / "empty.c").write_text("int unrelated(void) { return 0; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", str(empty / "empty.c"), "-o", str(lib)], check=True)
    # A matching digest: the file is intact, only the symbols are wrong.
    lib.with_name(lib.name + ".sha256").write_text(hashlib.sha256(lib.read_bytes()).hexdigest())
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(cache)}))


# Path.home() raises without $HOME and a password-file entry: simulate the latter.
NO_HOME = ("import pathlib\n"
           "def no_home(): raise RuntimeError('Could not determine home directory.')\n"
           "pathlib.Path.home = staticmethod(no_home)\n")


def test_no_home_directory(tmp_path):
    code = NO_HOME + PROBE
    assert_kernel_ran(run(code, env={"HOME": None, "SEQ_LOSS_UTIL_CACHE": str(tmp_path)}))
    assert list(tmp_path.glob("ctc_kernel_*.so"))
    # Without SEQ_LOSS_UTIL_CACHE either: a per-user folder in the temporary directory.
    (tmp_path / "tmp").mkdir()
    assert_kernel_ran(run(code, env={"HOME": None, "SEQ_LOSS_UTIL_CACHE": None,
                                     "TMPDIR": str(tmp_path / "tmp")}))
    assert list((tmp_path / "tmp").glob("seq_loss_util-*/ctc_kernel_*.so"))


def test_concurrent_builds_into_one_cache(tmp_path):
    # Four processes find the same empty cache and all build at once: each uses the
    # kernel with no warning, and the cache ends with one library and its digest (each
    # build publishes by atomic rename over the last), with no temporary folder left.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEQ_LOSS_UTIL_KERNEL": "1",
           "SEQ_LOSS_UTIL_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert_kernel_ran(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert sorted(f.name.split("_")[0] for f in tmp_path.iterdir()) == ["ctc", "ctc"]
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path)}))


@pytest.mark.parametrize("cc", ["cc -O2", "env cc"])
def test_cc_with_arguments(tmp_path, cc):
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path), "CC": cc}))


def test_a_compiler_without_march_native_gets_the_portable_build(tmp_path):
    """A compiler that refuses -march=native (some cross and Apple ones): the kernel is
    built without it, runs, and no warning says it is unavailable."""
    real = shutil.which(os.environ.get("CC", "cc").split()[0])
    fake = tmp_path / "cc-no-native"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && '
                    f'{{ echo "unknown: -march=native" >&2; exit 1; }}; done\nexec {real} "$@"\n')
    fake.chmod(0o755)
    result = run(env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path / "cache"), "CC": str(fake)})
    assert_kernel_ran(result)
    assert "unavailable" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_wait_on_the_parents_pool(tmp_path):
    code = textwrap.dedent("""
        import os, sys, time
        import torch
        import seq_loss_util as S
        from _seq_loss_kernels import cpu
        torch.set_num_threads(2)
        # The parent starts the kernel's thread pool and nothing else: a torch op that
        # entered GNU OpenMP's pool before fork would hang the child by itself.
        cpu._in_parallel(lambda b0, b1: time.sleep(0.01), batch=8, work=10**6)
        assert cpu._kernel_pool is not None
        pid = os.fork()
        if pid == 0:
            torch.set_num_threads(2)  # a child that still uses threads
            cpu._in_parallel(lambda b0, b1: time.sleep(0.01), batch=8, work=10**6)
            aug = S.to_blank_augmented_labels({"SEQ_DATA": torch.randint(1, 30, (8, 60)),
                                               "SEQ_LEN": torch.full((8,), 60)}, 0)
            S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], torch.randn(8, 400, 32),
                       torch.full((8,), 400))
            os._exit(0)
    """) + WAIT_FOR_CHILD
    result = run(code, env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path)}, timeout=90)
    assert result.returncode == 0 and "child exit 0" in result.stdout, result.stdout + result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_streams_on_two_threads_without_the_parents_workers(tmp_path):
    # fork copies none of the kernel's stream workers (threads of its own, not Python's):
    # the child starts its own (not counting the parent's, which would leave it on one
    # thread), and a lock held around the fork leaves the child's copy usable.
    code = textwrap.dedent("""
        import os, sys, time
        import torch
        import ctc_decoder as D
        from _seq_loss_kernels import cpu
        cpu._threads = lambda batch, work: 2
        g = torch.Generator().manual_seed(0)
        x = torch.randn(16, 48, 7, generator=g)
        want = [h[0].tokens for h in D.ctc_beam_search(x, beam_size=8)]
        def streamed():
            stream = D.ctc_beam_search_stream(16, beam_size=8)
            for a in range(0, 48, 8):
                stream.feed(x[:, a:a + 8])
            return [h[0].tokens for h in stream.finish()]
        assert streamed() == want
        assert cpu.BeamStream.pool("f32")[0] >= 1
        pid = os.fork()
        if pid == 0:
            ok = streamed() == want and cpu.BeamStream.pool("f32")[0] >= 1
            if os.path.isdir("/proc/self/task"):  # Linux: the child's own worker runs
                ok = ok and len(os.listdir("/proc/self/task")) >= 2
            os._exit(0 if ok else 3)
    """) + WAIT_FOR_CHILD
    result = run(code, env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path)}, timeout=180)
    assert result.returncode == 0 and "child exit 0" in result.stdout, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# Another user's library: the cache is trusted only where nobody else can write.

OTHER_UID = 65534  # "nobody": a second user, who owns nothing of ours

acting_as_another_user = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="acting as a second user needs root (to chown files to another uid)")

# A library with the kernel's eight entry points that computes nothing (the loss is
# whatever memory held) and whose constructor, run at load, leaves a marker file.
PLANTED_C = textwrap.dedent("""
    #include <stdio.h>
    #include <stdlib.h>
    #include <unistd.h>
    __attribute__((constructor)) static void planted(void) {
        FILE *f = fopen(getenv("PLANT_MARKER"), "w");
        if (f) { fprintf(f, "ran as uid %d\\n", (int)getuid()); fclose(f); }
    }
    void ctc_forward_f32(void) {}  void ctc_backward_f32(void) {}  void ctc_viterbi_f32(void) {}
    void ctc_forward_f64(void) {}  void ctc_backward_f64(void) {}  void ctc_viterbi_f64(void) {}
    int ctc_beam_search_f32(void) { return 0; }  int ctc_beam_search_f64(void) { return 0; }
    int ctc_beam_children_f32(void) { return 0; }  int ctc_beam_children_f64(void) { return 0; }
    void ctc_viterbi_band_f32(void) {}  void ctc_viterbi_band_f64(void) {}
    void ctc_viterbi_band_back_f32(void) {}  void ctc_viterbi_band_back_f64(void) {}
    int ctc_band_backtrace_f32(void) { return 0; }  int ctc_band_backtrace_f64(void) { return 0; }
    void ctc_exp_log_f32(void) {}  void ctc_exp_log_f64(void) {}
    void ctc_prepare_f32(void) {}  void ctc_prepare_f64(void) {}
    void ctc_bad_frames_f32(void) {}  void ctc_bad_frames_f64(void) {}
    void ctc_finish_loss_f32(void) {}  void ctc_finish_loss_f64(void) {}
    void ctc_grad_scale_f32(void) {}  void ctc_grad_scale_f64(void) {}
    void ctc_check_augmented_f32(void) {}  void ctc_check_augmented_f64(void) {}
    void ctc_log_softmax_f32(void) {}  void ctc_log_softmax_f64(void) {}
    long ctc_log_softmax_batch_f32(void) { return -1; }  long ctc_log_softmax_batch_f64(void) { return -1; }
    int ctc_loss_forward_f32(void) { return 0; }  int ctc_loss_forward_f64(void) { return 0; }
    int ctc_loss_backward_f32(void) { return 0; }  int ctc_loss_backward_f64(void) { return 0; }
    void *ctc_beam_stream_open_f32(void) { return 0; }  void *ctc_beam_stream_open_f64(void) { return 0; }
    void ctc_beam_stream_close_f32(void) {}  void ctc_beam_stream_close_f64(void) {}
    long ctc_beam_stream_feed_logits_f32(void) { return 0; }  long ctc_beam_stream_feed_logits_f64(void) { return 0; }
    long ctc_beam_stream_feed_threads_f32(void) { return 0; }  long ctc_beam_stream_feed_threads_f64(void) { return 0; }
    void ctc_beam_stream_pool_f32(void) {}  void ctc_beam_stream_pool_f64(void) {}
    void ctc_beam_stream_unseen_f32(void) {}  void ctc_beam_stream_unseen_f64(void) {}
    void ctc_beam_stream_held_f32(void) {}  void ctc_beam_stream_held_f64(void) {}
    long ctc_beam_stream_partial_f32(void) { return 0; }  long ctc_beam_stream_partial_f64(void) { return 0; }
    long ctc_spell_words_f32(void) { return 0; }  long ctc_spell_words_f64(void) { return 0; }
    int ctc_beam_stream_finish_f32(void) { return 0; }  int ctc_beam_stream_finish_f64(void) { return 0; }
    int ctc_beam_stream_reset_f32(void) { return 0; }  int ctc_beam_stream_reset_f64(void) { return 0; }
""")

# The loss of a random batch next to native CTC in float64, and every warning.
NATIVE_PROBE = textwrap.dedent("""
    import warnings
    import torch
    import seq_loss_util as S
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(3, 20, 6, generator=g)
        labels = torch.randint(0, 5, (3, 5), generator=g)  # raw ids: blank 0 comes in below
        lens = torch.tensor([5, 3, 4])
        aug = S.to_blank_augmented_labels({"SEQ_DATA": labels, "SEQ_LEN": lens}, 0)
        ours = S.ctc_loss(aug["SEQ_DATA"], aug["SEQ_LEN"], logits, torch.full((3,), 20),
                          exact=True)
    native = torch.nn.functional.ctc_loss(
        logits.double().log_softmax(-1).transpose(0, 1), labels + 1, torch.full((3,), 20), lens,
        reduction="none")
    print(S.backend(), float((ours.double() - native).abs().max()))
    for w in seen:
        print("WARNING", w.category.__name__, w.message)
""")


def plant(path: Path, marker: Path, owner: int) -> None:
    """Puts the planted library at ``path`` with a matching digest, both owned by ``owner``."""
    import hashlib

    src = path.with_name("planted.c")
    src.write_text(PLANTED_C)
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(path)], check=True)
    src.unlink()
    digest = path.with_name(path.name + ".sha256")
    digest.write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    for f in (path, digest):
        os.chown(f, owner, owner)
    marker.unlink(missing_ok=True)


def run_victim(code, env, marker):
    result = run(code, env={**env, "PLANT_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    backend, error = lines[0].split()
    return backend, float(error), [w for w in lines[1:] if w.startswith("WARNING")]


@pytest.fixture(scope="module")
def name(tmp_path_factory) -> str:
    """The library's file name for this source, compiler and machine."""
    probe = tmp_path_factory.mktemp("name-probe")
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(probe)}))
    return library(probe).name


def victim_without_home(tmp, marker):
    """NATIVE_PROBE as a user with no home directory, its temporary directory ``tmp``."""
    return run_victim(NO_HOME + NATIVE_PROBE,
                      {"HOME": None, "SEQ_LOSS_UTIL_CACHE": None, "TMPDIR": str(tmp)}, marker)


def test_planted_library_would_run_if_trusted(tmp_path, name):
    # The threat is real: a library that passes every check (our own folder, our own
    # files, a matching digest) is loaded, its constructor runs and the loss is garbage.
    # Each test below plants this same library, and must see none of that.
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    marker = tmp_path / "marker"
    plant(cache / name, marker, os.getuid() if hasattr(os, "getuid") else 0)
    result = run(NATIVE_PROBE, env={"SEQ_LOSS_UTIL_CACHE": str(cache),
                                    "PLANT_MARKER": str(marker)})
    assert marker.exists()
    assert result.returncode != 0 or not float(result.stdout.split()[1]) < 1e-3


@acting_as_another_user
def test_no_home_folder_made_first_by_another_user(tmp_path, name):
    # A uid with no password-file entry falls back to <tmp>/seq_loss_util-<uid>. Another
    # user made that folder first, open to all (0777), and left a library in it.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    trap = tmp / f"seq_loss_util-{os.getuid()}"
    trap.mkdir()
    os.chown(trap, OTHER_UID, OTHER_UID)
    trap.chmod(0o777)
    marker = tmp_path / "marker"
    plant(trap / name, marker, OTHER_UID)
    backend, error, warned = victim_without_home(tmp, marker)
    assert not marker.exists(), marker.read_text()
    assert backend == "c-kernel" and error < 1e-4
    assert len(warned) == 1 and "KernelCacheWarning" in warned[0] and str(trap) in warned[0]
    assert f"owned by uid {OTHER_UID}" in warned[0]
    # Nothing of ours was written into the other user's folder, nor left in tmp.
    assert sorted(p.name for p in trap.iterdir()) == sorted([name, name + ".sha256"])
    assert [p.name for p in tmp.iterdir()] == [trap.name]


@acting_as_another_user
def test_no_home_our_own_build_in_a_folder_another_user_owns(tmp_path, name):
    # The library is ours (we built it there before), but the folder is not: its owner
    # can swap the file at any time, so neither is trusted.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    trap = tmp / f"seq_loss_util-{os.getuid()}"
    trap.mkdir(mode=0o700)
    marker = tmp_path / "marker"
    plant(trap / name, marker, os.getuid())
    os.chown(trap, OTHER_UID, OTHER_UID)
    backend, error, warned = victim_without_home(tmp, marker)
    assert not marker.exists()
    assert backend == "c-kernel" and error < 1e-4
    assert len(warned) == 1 and str(trap) in warned[0]


@acting_as_another_user
def test_no_home_link_planted_in_the_temporary_folder(tmp_path, name):
    # The predictable name is a symbolic link to a folder the other user fills.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    marker = tmp_path / "marker"
    plant(elsewhere / name, marker, os.getuid())
    link = tmp / f"seq_loss_util-{os.getuid()}"
    link.symlink_to(elsewhere)
    os.lchown(link, OTHER_UID, OTHER_UID)
    backend, error, warned = victim_without_home(tmp, marker)
    assert not marker.exists()
    assert backend == "c-kernel" and error < 1e-4
    assert len(warned) == 1 and "symbolic link" in warned[0]


def test_no_home_fallback_folder_is_private(tmp_path):
    code = NO_HOME + PROBE
    old = os.umask(0o002)  # the usual umask of user-private groups
    try:
        assert_kernel_ran(run(code, env={"HOME": None, "SEQ_LOSS_UTIL_CACHE": None,
                                         "TMPDIR": str(tmp_path)}))
    finally:
        os.umask(old)
    (folder,) = tmp_path.glob("seq_loss_util-*")
    assert folder.stat().st_mode & 0o777 == 0o700
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o022 == 0, f


@acting_as_another_user
@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775], ids=oct)
def test_shared_cache_others_can_write(tmp_path, mode, name):
    # A lab points every account at one SEQ_LOSS_UTIL_CACHE; any account that can write
    # it plants a library under the name the loader computes.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    marker = tmp_path / "marker"
    plant(shared / name, marker, OTHER_UID)
    backend, error, warned = run_victim(NATIVE_PROBE, {"SEQ_LOSS_UTIL_CACHE": str(shared)},
                                        marker)
    assert not marker.exists()
    assert backend == "c-kernel" and error < 1e-4
    assert len(warned) == 1 and str(shared) in warned[0] and "writable" in warned[0]
    assert sorted(p.name for p in shared.iterdir()) == sorted([name, name + ".sha256"])


@acting_as_another_user
@pytest.mark.parametrize("foreign", ["library", "digest"])
def test_planted_file_owned_by_another_user_in_our_folder(tmp_path, foreign, name):
    # Our folder, but a library (or digest) someone else owns: not loaded, and replaced
    # by our own build, so the next process is silent.
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    marker = tmp_path / "marker"
    plant(cache / name, marker, os.getuid())
    os.chown(cache / (name if foreign == "library" else name + ".sha256"), OTHER_UID, OTHER_UID)
    backend, error, warned = run_victim(NATIVE_PROBE, {"SEQ_LOSS_UTIL_CACHE": str(cache)}, marker)
    assert not marker.exists()
    assert backend == "c-kernel" and error < 1e-4
    assert len(warned) == 1 and str(cache / name) in warned[0]
    assert all(f.stat().st_uid == os.getuid() for f in cache.iterdir())
    backend, error, warned = run_victim(NATIVE_PROBE, {"SEQ_LOSS_UTIL_CACHE": str(cache)}, marker)
    assert backend == "c-kernel" and error < 1e-4 and warned == []


def test_library_others_can_write_in_our_folder(tmp_path, name):
    # Our own file, but writable by the group: its bytes are not ours alone.
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    marker = tmp_path / "marker"
    plant(cache / name, marker, os.getuid())
    (cache / name).chmod(0o775)
    backend, error, warned = run_victim(NATIVE_PROBE, {"SEQ_LOSS_UTIL_CACHE": str(cache)}, marker)
    assert not marker.exists()
    assert backend == "c-kernel" and error < 1e-4
    assert len(warned) == 1 and "writable by group or others" in warned[0]


def test_cache_swapped_after_its_check_is_not_followed(tmp_path, name):
    # Someone who can write the cache's *parent* renames the checked folder away and
    # puts their own under its name (our planted library, owned by us, with a matching
    # digest: what a path-based loader would accept). The loader works through the
    # descriptor it checked, so it still loads the genuine library.
    cache, staging, marker = tmp_path / "cache", tmp_path / "staging", tmp_path / "marker"
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(cache)}))
    staging.mkdir(mode=0o700)
    plant(staging / name, marker, os.getuid() if hasattr(os, "getuid") else 0)
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from _seq_loss_kernels import cpu
        cache, folder, why = cpu._open_trusted_cache()
        assert why is None, why
        os.rename({str(cache)!r}, {str(cache) + ".old"!r})
        os.rename({str(staging)!r}, {str(cache)!r})
        lib = cpu._load_verified(folder, {name!r}, cache / {name!r})
        print("loaded" if lib is not None and cpu._bind_kernel(lib) else "none")
    """)
    result = run(code, env={"SEQ_LOSS_UTIL_CACHE": str(cache), "PLANT_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["loaded"]
    assert not marker.exists()


def test_missing_parents_are_made_private(tmp_path):
    # A parent others could write would let them rename the cache away: every folder
    # the loader makes is 0700, whatever the umask.
    deep = tmp_path / "a" / "b" / "cache"
    old = os.umask(0)
    try:
        assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(deep)}))
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert sorted(f.name for f in deep.iterdir()) == sorted([library(deep).name,
                                                             library(deep).name + ".sha256"])
    assert all(f.stat().st_mode & 0o022 == 0 for f in deep.iterdir())
