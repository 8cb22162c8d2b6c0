"""Which TF reference runs: the original when the user has it, else the mirror."""
import shutil

import pytest

import tf_reference


def test_mirror_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv(tf_reference.ENV_VAR, raising=False)
    monkeypatch.setattr(tf_reference, "DROP_IN", tmp_path / "absent.py")
    assert tf_reference.locate() == ("mirror", tf_reference.MIRROR)


def test_environment_variable_names_the_original(monkeypatch, tmp_path):
    original = tmp_path / "seq_loss_util.py"
    original.write_text("# stands in for the course's file\n")
    monkeypatch.setenv(tf_reference.ENV_VAR, str(original))
    assert tf_reference.locate() == ("original", original.resolve())


def test_drop_in_place_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv(tf_reference.ENV_VAR, raising=False)
    drop_in = tmp_path / "original" / "seq_loss_util.py"
    drop_in.parent.mkdir()
    drop_in.write_text("# stands in for the course's file\n")
    monkeypatch.setattr(tf_reference, "DROP_IN", drop_in)
    assert tf_reference.locate() == ("original", drop_in)


def test_missing_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(tf_reference.ENV_VAR, str(tmp_path / "nope.py"))
    with pytest.raises(FileNotFoundError, match="SEQ_LOSS_TF_ORIGINAL"):
        tf_reference.locate()


@pytest.mark.needs_tf
def test_loaded_original_runs_and_says_so(monkeypatch, tmp_path):
    """A file given as the original is imported and described as the original."""
    copy = tmp_path / "seq_loss_util.py"
    shutil.copy(tf_reference.MIRROR, copy)
    monkeypatch.setenv(tf_reference.ENV_VAR, str(copy))
    ref = tf_reference.load()
    assert ref.kind == "original" and ref.path == copy.resolve()
    assert "the original seq_loss_util.py at" in ref.describe()
    assert hasattr(ref.module, "ctc_loss") and ref.module.log_0 == pytest.approx(-706.8936)
