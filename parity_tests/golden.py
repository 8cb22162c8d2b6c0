"""Loads the recorded inputs and outputs of the TensorFlow original.

``fixtures/upstream_tf.npz`` and ``fixtures/upstream_tf_manifest.json`` are copied
from ``shared/golden``: data only, no code of the original. See that README for the
keys; in short, ``case(name)["logits"]`` is the array stored under ``name/logits``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@functools.cache
def _npz():
    with np.load(FIXTURES / "upstream_tf.npz") as z:
        return {k: z[k] for k in z.files}


@functools.cache
def manifest() -> dict:
    return json.loads((FIXTURES / "upstream_tf_manifest.json").read_text())


def case(name: str) -> dict:
    """Every array recorded under ``name/``, keyed by the rest of its path."""
    prefix = name + "/"
    found = {k[len(prefix):]: v for k, v in _npz().items() if k.startswith(prefix)}
    if not found:
        raise KeyError(f"no recorded case {name!r}")
    return found


def blank_index(name: str) -> int:
    """The case's blank id: recorded with end-to-end cases, in the manifest otherwise."""
    found = case(name)
    if "blank_index" in found:
        return int(found["blank_index"])
    for entry in manifest()["cases"] + manifest()["upstream_failures"]:
        if entry["name"] == name:
            return int(entry["blank_index"])
    raise KeyError(f"no blank index recorded for {name!r}")


def end_to_end_cases() -> list:
    return manifest()["cases"]


def upstream_failures() -> list:
    return manifest()["upstream_failures"]
