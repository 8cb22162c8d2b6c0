"""TensorFlow is required where CI runs (it installs it): a missing TF fails there
instead of skipping the parity tests. Elsewhere they are skipped with a reason."""
import os

import pytest

from parity_tests.tf_side import tensorflow_available

HAVE_TF = tensorflow_available()


def pytest_collection_modifyitems(config, items):
    if HAVE_TF:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run the TensorFlow parity tests, but TensorFlow "
                                "(tensorflow-cpu, tensorflow-probability, tf-keras) is missing")
    skip = pytest.mark.skip(reason="TensorFlow is not installed (pip install -e '.[tf]')")
    for item in items:
        if "needs_tf" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_tf: runs the TensorFlow reference")


def pytest_report_header(config):
    if not HAVE_TF:
        return "TF reference: none (TensorFlow is not installed)"
    from tf_reference import load

    return load().describe()
