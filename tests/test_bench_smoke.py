"""The benchmark runs (tiny sizes, no timing assertions: speed is judged by its table)."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

from optional_deps import need_triton

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def load(name: str = "bench"):
    """The benchmark script ``benchmarks/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, BENCH.with_name(f"{name}.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert load().main(["--smoke", "--no-tf", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    impls = {row["impl"] for row in result["rows"]}
    assert {"native", "port", "port exact"} <= impls
    assert all(row["fwd_bwd_ms"] > 0 and row["peak_mb"] >= 0 for row in result["rows"])
    assert "x native" in capsys.readouterr().out


def test_gpu_rows_run_under_the_interpreter(monkeypatch, tmp_path):
    """The CUDA table's implementations (Triton, the PyTorch path) and its determinism
    column, run on CPU tensors: what --device cuda prints, minus the GPU."""
    need_triton()
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("a GPU is present: the CUDA table runs there instead")
    bench = load()
    monkeypatch.setattr(bench, "impls", lambda device: {
        name: (fn, bench.CUDA_BACKENDS.get(name)) for name, fn in bench.CUDA_IMPLS.items()})
    out = tmp_path / "bench.json"
    assert bench.main(["--sizes", "2,8,5,2", "--repeats", "1", "--no-tf", "--dtypes", "float32",
                       "bfloat16", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["impl"], r["dtype"]) for r in rows} >= {("port triton", "bfloat16"),
                                                       ("port pytorch", "float32")}
    inp = bench.make_inputs((2, 8, 5, 2), "cpu")
    assert bench.deterministic(bench.port(True), inp, "triton", runs=3)


def test_gpu_check_dry_run(tmp_path):
    """The prepared GPU run, on CPU under the interpreter at a tiny size: what a lent
    GPU machine runs (benchmarks/gpu_check.sh), minus the GPU."""
    import subprocess
    import sys

    need_triton()
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    result = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)},
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert {(r["impl"], r["dtype"]) for r in rows} == {
        (impl, dtype) for impl in ("native", "port triton", "port pytorch")
        for dtype in ("float32", "bfloat16")}
    assert all(r["deterministic"] for r in rows)
    assert "port triton" in result.stdout.splitlines()[-3]  # the summary table comes last


def test_decode_benchmark_smoke(capsys):
    """The decoding benchmark at a tiny size: it runs, with or without pyctcdecode."""
    bench = load("bench_decode")
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "greedy (ours)" in out and "ours + LM" in out


def test_lm_load_benchmark_smoke(capsys):
    bench = load("bench_lm_load")
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "ours, mapping the compact file" in out and "goal: compact load < 1 s" in out


def test_long_align_benchmark_smoke(capsys, monkeypatch):
    """The long-alignment benchmark on two minutes of the built-in word list's sentences
    (a fresh clone has no Bible archive): it runs and prints both thread settings' rows.
    Its accuracy is not asserted here: with a 50-word list the untranscribed speech says
    the transcript's words too (tests/test_long_align.py plants unambiguous recordings)."""
    from optional_deps import need_c_kernel

    need_c_kernel()  # align_long needs it (the test-pytorch job switches it off)
    bench = load("bench_long_align")
    monkeypatch.setattr(bench, "kjv_sentences", lambda: None)
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "(segments)" in line]
    assert [r.split("(")[0].strip() for r in rows][:2] == ["align_long", "align_long threads=1"]
    assert "failed" not in out


def test_stream_benchmark_smoke(capsys):
    """The streaming benchmark at a tiny size: the stream's transcripts equal the
    offline decoder's, and the long stream reports its memory."""
    from optional_deps import need_c_kernel

    need_c_kernel()
    bench = load("bench_stream")
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "final transcripts equal to offline: 3/3" in out
    assert "goal: flat" in out
