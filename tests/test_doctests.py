"""The examples in the docstrings and in the documentation's pages run and print what they show.

Every module of the package (private ones too: ``minimize_batch``'s example lives in
``adamnb.optimize._batch``) and every ``docs/*.md`` page is searched for ``>>>`` examples; each
docstring or page is one test, run in a fresh namespace from an empty working folder (so an
example that writes a file writes it there). Examples that need what a CI machine may lack are
listed in :data:`NEEDS` with the reason and skipped; nothing is deleted.
"""

import doctest
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import adamnb

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: Docstrings whose examples need what CI lacks: {name: why}. The MNIST ones mark their first
#: line "+SKIP" and read the real files after it; run them by hand with the data.
NEEDS = {
    "adamnb.nn.datasets.load_mnist": "reads the real MNIST files (60,000 training images); its "
                                     "first line is marked +SKIP",
    "adamnb.nn.datasets.read_idx": "reads an MNIST file from the working folder; its first line "
                                   "is marked +SKIP",
}


def modules():
    names = [info.name for info in pkgutil.walk_packages(adamnb.__path__, "adamnb.")]
    return ["adamnb", *sorted(name for name in names if not name.endswith("__main__"))]


def docstring_tests():
    finder = doctest.DocTestFinder()
    found = []
    for name in modules():
        module = importlib.import_module(name)
        found += [test for test in finder.find(module, name) if test.examples]
    return sorted(found, key=lambda test: test.name)


def pycon_only(text):
    """The page with everything but its ```pycon blocks blanked (fences too), line numbers kept,
    so that the prose and a closing fence are never read as expected output."""
    lines, inside = [], False
    for line in text.splitlines():
        fence = line.strip().startswith("```")
        if fence:
            inside = not inside and line.strip() == "```pycon"
        lines.append(line if inside and not fence else "")
    return "\n".join(lines) + "\n"


def page_tests():
    parser = doctest.DocTestParser()
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        test = parser.get_doctest(pycon_only(page.read_text(encoding="utf-8")), {},
                                  f"docs/{page.name}", str(page), 0)
        if test.examples:
            found.append(test)
    return found


#: Pages whose examples use numba.cuda: run in a fresh interpreter in numba's CUDA simulator
#: (NUMBA_ENABLE_CUDASIM must be set before numba is imported, so not in this process).
SIMULATED = {"docs/gpu.md"}

_RUN_PAGE = """
import doctest, sys
sys.path.insert(0, {tests!r})
from test_doctests import FLAGS, pycon_only
text = pycon_only(open({path!r}, encoding="utf-8").read())
test = doctest.DocTestParser().get_doctest(text, {{}}, {name!r}, {path!r}, 0)
result = doctest.DocTestRunner(optionflags=FLAGS).run(test)
sys.exit(1 if result.failed else 0)
"""


def run(test, tmp_path, monkeypatch):
    if test.name in SIMULATED:
        code = _RUN_PAGE.format(tests=str(ROOT / "tests"), path=test.filename, name=test.name)
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   cwd=tmp_path, timeout=600,
                                   env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
        assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
        return
    if test.name in NEEDS:
        pytest.skip(NEEDS[test.name])
    monkeypatch.chdir(tmp_path)
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)


DOCSTRINGS = docstring_tests()
PAGES = page_tests()


@pytest.mark.parametrize("test", DOCSTRINGS, ids=[test.name for test in DOCSTRINGS])
def test_docstring_examples(test, tmp_path, monkeypatch):
    run(test, tmp_path, monkeypatch)


@pytest.mark.parametrize("test", PAGES, ids=[test.name for test in PAGES])
def test_documentation_page_examples(test, tmp_path, monkeypatch):
    run(test, tmp_path, monkeypatch)


def test_the_examples_are_found():
    # A finder that silently found nothing would pass every test above.
    names = {test.name for test in DOCSTRINGS}
    assert {"adamnb.plot", "adamnb.optimize.stochastic", "adamnb.nn.datasets.load_mnist"} <= names
    assert len(DOCSTRINGS) >= 10
    assert {"docs/minimize.md", "docs/training-loops.md", "docs/schedules.md",
            "docs/gpu.md"} <= {
        test.name for test in PAGES}
