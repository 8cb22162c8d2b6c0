"""The benchmark runs (a tiny size, no timing assertions: speed is judged by its table)."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_benchmark_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--smoke", "--no-tf", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    impls = {row["impl"] for row in result["rows"]}
    assert {"native", "port", "port exact"} <= impls
    assert all(row["fwd_bwd_ms"] > 0 and row["peak_mb"] >= 0 for row in result["rows"])
    assert "x native" in capsys.readouterr().out
