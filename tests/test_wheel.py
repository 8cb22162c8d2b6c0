"""The wheel a user gets: built from the checkout, installed without dependencies into
a fresh virtual environment that borrows this one's torch and numpy, and used from
another folder: the module imports from the wheel, the compiled kernel builds from the
installed C sources, the Triton kernels and the decoder import, a loss and a decode
run. Also: the license, the version and py.typed are in it."""
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                             "--wheel-dir", str(out)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (built,) = out.glob("seq_loss_util-*.whl")
    return built


def test_wheel_holds_license_version_and_py_typed(wheel):
    import seq_loss_util as S

    assert wheel.name.startswith(f"seq_loss_util-{S.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("seq_loss_util.py", "ctc_decoder.py", "ngram_lm.py", "ctc_plot.py",
                   "torchaudio_compat.py", "ctc_timestamps.py", "ctc_long_align.py",
                   "_seq_loss_kernels/cpu.c", "_seq_loss_kernels/ctc_beam.c",
                   "_seq_loss_kernels/py.typed", "_seq_loss_kernels/triton_ctc.py",
                   *(f"ctc_scorers/{name}.py" for name in (
                       "__init__", "base", "word_lm", "word_bonus", "hotwords",
                       "unknown_words", "token_lm"))):
        assert module in names, module
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert f"Version: {S.__version__}" in metadata


def test_wheel_works_from_a_fresh_environment(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; "
                             "print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # pip from this environment installs the wheel alone into the new one's site-packages.
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                    "--target", target, str(wheel)], check=True, capture_output=True)
    # torch, numpy (and triton) come from this environment, appended after the new one's
    # own site-packages: our editable install here is a .pth import hook, which a
    # PYTHONPATH entry does not run, so the wheel is what gets imported.
    borrowed = sysconfig.get_paths()["purelib"]
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = textwrap.dedent(f"""
        import sys
        sys.path.append({borrowed!r})
        import torch
        import seq_loss_util as S, ctc_decoder, ngram_lm
        assert S.__file__.startswith({target!r}), S.__file__
        assert ctc_decoder.__file__.startswith({target!r}), ctc_decoder.__file__
        assert S.backend("cpu") == "c-kernel", S.backend("cpu")  # built from the wheel's C
        import _seq_loss_kernels.cpu as cpu
        assert cpu.__file__.startswith({target!r})
        from _seq_loss_kernels import triton_ctc, triton_wrapper  # importable (GPU code)
        logits = torch.randn(2, 20, 5, requires_grad=True)
        loss = S.CtcLossModule()(logits, torch.tensor([[1, 2, 3], [4, -100, -100]]))
        loss.backward()
        hyps = S.ctc_beam_search(logits.detach(), beam_size=4)
        print("ok", S.__version__, len(hyps), loss.isfinite().item())
    """)
    result = subprocess.run([str(python), "-c", probe], cwd=work, capture_output=True,
                            text=True, timeout=600,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                 "SEQ_LOSS_UTIL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    import seq_loss_util as S

    assert result.stdout.split() == ["ok", S.__version__, "2", "True"], result.stdout
    assert any((tmp_path / "cache").glob("ctc_kernel_*.so"))  # compiled here, from the wheel
