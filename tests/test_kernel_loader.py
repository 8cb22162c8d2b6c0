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


pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc").split()[0]) is None,
                                reason="no C compiler to build the kernel with")


def run(code=PROBE, env=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEQ_LOSS_UTIL_KERNEL": "1", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


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


def test_no_home_directory(tmp_path):
    # HOME unset and no password-file entry: Path.home() raises. Simulate the latter.
    code = ("import pathlib\n"
            "def no_home(): raise RuntimeError('Could not determine home directory.')\n"
            "pathlib.Path.home = staticmethod(no_home)\n" + PROBE)
    assert_kernel_ran(run(code, env={"HOME": None, "SEQ_LOSS_UTIL_CACHE": str(tmp_path)}))
    assert list(tmp_path.glob("ctc_kernel_*.so"))
    # Without SEQ_LOSS_UTIL_CACHE either: a per-user folder in the temporary directory.
    (tmp_path / "tmp").mkdir()
    assert_kernel_ran(run(code, env={"HOME": None, "SEQ_LOSS_UTIL_CACHE": None,
                                     "TMPDIR": str(tmp_path / "tmp")}))
    assert list((tmp_path / "tmp").glob("seq_loss_util-*/ctc_kernel_*.so"))


@pytest.mark.parametrize("cc", ["cc -O2", "env cc"])
def test_cc_with_arguments(tmp_path, cc):
    assert_kernel_ran(run(env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path), "CC": cc}))


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
    result = run(code, env={"SEQ_LOSS_UTIL_CACHE": str(tmp_path)}, timeout=90)
    assert result.returncode == 0 and "child exit 0" in result.stdout, result.stdout + result.stderr
