"""The package metadata meets users where they are: Python 3.10 (the course's conda
environment) and whatever torch they already have."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on 3.10 needs tomli")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def all_requirements():
    yield from (Requirement(r) for r in PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        yield from (Requirement(r) for r in extra)


def test_python_310_is_accepted():
    allowed = SpecifierSet(PROJECT["requires-python"])
    assert "3.10.13" in allowed and "3.11.7" in allowed


def test_torch_is_a_lower_bound_only():
    torch_reqs = [r for r in all_requirements() if r.name == "torch"]
    assert torch_reqs, "torch must be a dependency"
    for req in torch_reqs:
        operators = {spec.operator for spec in req.specifier}
        assert operators == {">="}, f"torch must only have a lower bound, got '{req}'"
    # A user's torch of any release since the floor is left alone.
    for version in ("2.3.1", "2.13.0", "3.0.0"):
        assert all(version in req.specifier for req in torch_reqs)


def test_no_requirement_is_pinned_exactly():
    pinned = [str(r) for r in all_requirements() if any(s.operator in ("==", "===")
                                                         for s in r.specifier)]
    assert not pinned, f"exact pins belong in the Makefile, not the metadata: {pinned}"


def test_hf_extra_admits_only_a_working_accelerate():
    hf = {r.name: r for r in (Requirement(x) for x in PROJECT["optional-dependencies"]["hf"])}
    # The transformers 5 Trainer refuses accelerate < 1.1; 4.46 passes num_items_in_batch.
    assert "1.0.1" not in hf["accelerate"].specifier and "1.1.0" in hf["accelerate"].specifier
    assert "4.45.2" not in hf["transformers"].specifier
    assert "4.46.0" in hf["transformers"].specifier


def test_environment_yml_is_on_python_310():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- python=3\.10\s*$", text, re.M), "environment.yml must use 3.10"


def test_makefile_pins_the_cpu_torch():
    # CI installs torch first, pinned exactly, so nothing can pull a CUDA build.
    assert "pip install torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_optional_dependency_gaps_are_named():
    from optional_deps import missing

    assert missing({"pytest": "8"}, "test") is None
    assert "is older than 999" in missing({"pytest": "999"}, "test")
    assert "no-such-distribution-xyz is not installed (pip install '.[hf]')" == missing(
        {"no-such-distribution-xyz": "1"}, "hf")
