"""Optional packages: a test that needs one skips with the reason when it is missing
or too old. Where CI runs (it installs every extra) the same gap is an error, so a
broken install step cannot hide behind a skip."""
from __future__ import annotations

import importlib.metadata
import os

import pytest


def missing(requirements: dict, extra: str) -> str | None:
    """Why ``requirements`` ({distribution: minimum version}) are not met, or None."""
    from packaging.version import Version

    for dist, minimum in requirements.items():
        try:
            found = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return f"{dist} is not installed (pip install '.[{extra}]')"
        if Version(found) < Version(minimum):
            return f"{dist} {found} is older than {minimum} (pip install -U '.[{extra}]')"
    return None


def require(requirements: dict, extra: str) -> None:
    """Skips the calling test module unless ``requirements`` are met; fails under CI."""
    reason = missing(requirements, extra)
    if reason is None:
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"CI installs the '{extra}' extra, yet {reason}")
    pytest.skip(reason, allow_module_level=True)


# What the Hugging Face tests need: the same floors as the 'hf' extra.
HF = {"transformers": "4.46", "accelerate": "1.1", "jiwer": "3.0"}
