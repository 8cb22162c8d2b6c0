"""The comparison report (``python -m parity_tests.compare --report DIR``) is a page
a browser shows: rendered by headless Chromium to a PNG that is not blank, with its
four images loaded. Needs TensorFlow and matplotlib (the 'tf' and 'plot' extras) and
a Chromium (Debian's ``chromium``; ``.ci/run`` installs it): skipped with the reason
where one is missing, an error under CI."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optional_deps import require, unavailable

require({"tensorflow-cpu": "2.16", "matplotlib": "3.7"}, "tf,plot")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = subprocess.run([sys.executable, "-m", "parity_tests.compare", "--cases", "3",
                             "--max-time", "40", "--report", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"report: {out / 'index.html'}" in result.stdout
    return out / "index.html"


def test_report_is_self_contained(report):
    page = report.read_text()
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http" not in page.split("<body>", 1)[1]  # nothing fetched from a network
    assert "summary: 3/3 cases pass" in page


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("no Chromium here (apt-get install chromium)")
    return found


def test_report_renders_in_a_browser(report, tmp_path):
    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1400,2600", f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.std() > 0.05  # drawn, not a blank page
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    # In the rendered document: four images, each a decoded PNG (naturalWidth is set
    # only once the browser decoded it; the script below writes it into the DOM).
    assert len(re.findall(r"<img ", dom)) == 4
    widths = [int(w) for w in re.findall(r"data-width=\"(\d+)\"", dom)]
    assert len(widths) == 4 and min(widths) > 0, widths
