"""The comparison command: it names the reference, prints a row per case, writes JSON,
and exits 1 when a case fails."""
import json

import pytest

from parity_tests import compare, tolerances

pytestmark = pytest.mark.needs_tf


def test_compare_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert compare.main(["--cases", "3", "--max-time", "40", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("TF reference: ")
    assert "summary: 3/3 cases pass" in text
    result = json.loads(out.read_text())
    assert result["passed"] == result["total"] == 3
    assert result["reference"]["kind"] in ("mirror", "original")


def test_compare_exits_1_on_a_failure(monkeypatch, capsys):
    monkeypatch.setitem(tolerances.LOSS, "atol", -1.0)  # nothing can pass
    assert compare.main(["--cases", "2", "--max-time", "20"]) == 1
    assert "FAIL" in capsys.readouterr().out
