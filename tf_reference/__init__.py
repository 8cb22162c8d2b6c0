"""The TensorFlow side of the parity checks: the original when you have it, else our mirror.

``load()`` picks, in this order:

1. the file named by the environment variable ``SEQ_LOSS_TF_ORIGINAL``;
2. ``tf_reference/original/seq_loss_util.py`` (git-ignored: drop the course's file there);
3. ``tf_reference/seq_loss_util_tf.py``, this project's TensorFlow mirror.

The original cannot ship with this project (it carries no license); see README.md here.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from types import ModuleType

ENV_VAR = "SEQ_LOSS_TF_ORIGINAL"
HERE = Path(__file__).resolve().parent
DROP_IN = HERE / "original" / "seq_loss_util.py"
MIRROR = HERE / "seq_loss_util_tf.py"


@dataclasses.dataclass(frozen=True)
class TfReference:
    module: ModuleType
    kind: str  # "original" or "mirror"
    path: Path

    def describe(self) -> str:
        if self.kind == "original":
            return f"TF reference: the original seq_loss_util.py at {self.path}"
        return f"TF reference: the in-repo TensorFlow mirror at {self.path} (no original found)"


def locate() -> tuple[str, Path]:
    """Which TF module ``load`` would use, without importing TensorFlow."""
    named = os.environ.get(ENV_VAR)
    if named:
        path = Path(named).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={named!r} does not name a file")
        return "original", path
    if DROP_IN.is_file():
        return "original", DROP_IN
    return "mirror", MIRROR


_loaded: dict = {}


def load() -> TfReference:
    kind, path = locate()
    if path not in _loaded:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        name = "seq_loss_util_tf_original" if kind == "original" else "seq_loss_util_tf_mirror"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[path] = module
    return TfReference(_loaded[path], kind, path)
