"""The standalone Python examples of the README and of the guide in docs/ run (those
that start with an import), and print what the page says they print. The README stays
a first screen, and links every page of the guide.

Each ``print(...)`` line carries its output: as a trailing comment, or as the comment
lines right below it. ``...`` stands for any text (as in doctest), and runs of white
space compare equal, so a wrapped comment matches one long printed line."""
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, b) for page in PAGES
          for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
          if b.startswith("import")]


def expected_output(block: str) -> list:
    """What the block's comments say each print writes, in order."""
    lines = block.splitlines()
    said = []
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        code, _, comment = line.partition("  #")
        if comment.strip():
            said.append(comment.strip())
            continue
        below = []
        for following in lines[i + 1:]:
            if not following.startswith("#"):
                break
            below.append(following[1:])
        assert below, f"this print has no output written beside or below it: {line.strip()}"
        said.append(" ".join(below))
    return said


def matches(printed: str, said: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in " ".join(said.split()).split("..."))
    return re.fullmatch(pattern, " ".join(printed.split()), re.S) is not None


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


def test_readme_is_a_first_screen_linking_every_guide_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in text or page.name == "README.md", page.name
    for figure in ("docs/figures/lattice.png", "docs/figures/alignment.png"):
        assert figure in text and (ROOT / figure).is_file()
    for page in PAGES:  # every relative link resolves
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page, block", BLOCKS,
                         ids=[f"{p.name}-{i}" for i, (p, _) in enumerate(BLOCKS)])
def test_readme_example_prints_what_it_says(page, block):
    said = expected_output(block)
    assert said or "assert " in block, "the example checks nothing: print a value and say it"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(page), "exec"), {"__name__": "readme_example"})
    printed = out.getvalue()
    assert matches(printed, " ".join(said)), f"printed:\n{printed}\nthe README says:\n{said}"


def test_a_wrong_value_in_the_readme_fails():
    block = "import math\nprint(round(math.pi, 4))  # 3.1416\n"
    assert expected_output(block) == ["3.1416"]
    assert matches("3.1416\n", "3.1416") and not matches("3.1415\n", "3.1416")
    assert matches("tensor([1.], grad_fn=<X>)\n", "tensor([1.], ...)")
    with pytest.raises(AssertionError, match="no output written"):
        expected_output("print(1)\nx = 2\n")
