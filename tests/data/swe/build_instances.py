"""Rebuild the SWE-bench-style instances in this folder from PyPI sdists.

    python tests/data/swe/build_instances.py       # needs `pip download` access to PyPI

For each project: download the sdist (``pip download --no-deps --no-binary :all:``), keep the
package and its tests, inject a bug (one text replacement), store the buggy tree as
``<name>/repo.tar.gz``, the fix as ``gold.diff``, a plausible but wrong fix as ``wrong.diff``, and
``instance.json`` (FAIL_TO_PASS / PASS_TO_PASS pytest node ids, checked by running pytest on the
host before and after the gold patch).
"""

from __future__ import annotations

import difflib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

INSTANCES = [
    {
        "name": "inflection_dasherize",
        "sdist": "inflection==0.5.1",
        "keep": ["inflection", "test_inflection.py", "setup.cfg", "setup.py", "LICENSE"],
        "file": "inflection/__init__.py",
        "good": "    return word.replace('_', '-')\n",
        "bug": "    return word.replace('_', '-', 1)\n",
        # wrong: still only joins the first two parts -> the FAIL_TO_PASS test keeps failing
        "wrong": "    return '-'.join(word.split('_')[:2])\n",
        "fail_to_pass": ["test_inflection.py::test_dasherize[person_street_address-person-street-address]"],
        "pass_to_pass": ["test_inflection.py::test_dasherize[street-street]",
                         "test_inflection.py::test_dasherize[street_address-street-address]",
                         "test_inflection.py::test_titleize[active_record-Active Record]",
                         "test_inflection.py::test_pluralize_empty_string",
                         "test_inflection.py::test_ordinal[-1--1st]"],
    },
    {
        "name": "toolz_frequencies",
        "sdist": "toolz==1.2.0",
        "keep": ["toolz", "tlz", "setup.cfg", "pyproject.toml", "LICENSE.txt"],
        "file": "toolz/itertoolz.py",
        "good": "        d[item] += 1\n",
        "bug": "        d[item] = 1\n",
        # wrong: fixes frequencies but breaks interpose -> a PASS_TO_PASS regression
        "wrong": "        d[item] += 1\n",
        "wrong_extra": ("        return iter([])\n    return inposed\n",
                        "        return iter([el])\n    return inposed\n"),
        "fail_to_pass": ["toolz/tests/test_itertoolz.py::test_frequencies"],
        "pass_to_pass": ["toolz/tests/test_itertoolz.py::test_interpose",
                         "toolz/tests/test_itertoolz.py::test_interpose_empty",
                         "toolz/tests/test_itertoolz.py::test_groupby"],
    },
]


def udiff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                 f"a/{path}", f"b/{path}")
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def pytest_outcomes(root: Path, ids: list[str]) -> dict[str, bool]:
    out = {}
    for node in ids:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            node], cwd=root, capture_output=True)
        out[node] = r.returncode == 0
    return out


def build(spec: dict, work: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    spec["sdist"], "-d", str(work)], check=True, capture_output=True)
    sdist = next(work.glob("*.tar.gz"))
    with tarfile.open(sdist) as t:
        t.extractall(work / "x", filter="data")
    src = next((work / "x").iterdir())
    repo = work / "repo"
    repo.mkdir()
    for name in spec["keep"]:
        p = src / name
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, repo / name)
    for junk in repo.rglob("__pycache__"):
        shutil.rmtree(junk)
    f = repo / spec["file"]
    good = f.read_text()
    buggy = replace_once(good, spec["good"], spec["bug"])
    wrong = replace_once(buggy, spec["bug"], spec["wrong"])
    if "wrong_extra" in spec:
        wrong = replace_once(wrong, *spec["wrong_extra"])
    f.write_text(buggy)
    ids = spec["fail_to_pass"] + spec["pass_to_pass"]
    before = pytest_outcomes(repo, ids)
    assert not any(before[i] for i in spec["fail_to_pass"]), before
    assert all(before[i] for i in spec["pass_to_pass"]), before
    out = HERE / spec["name"]
    out.mkdir(exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(repo, arcname="repo", filter=lambda ti: ti.replace(uid=0, gid=0, uname="",
                                                                  gname="", mtime=0,
                                                                  deep=False))
    (out / "repo.tar.gz").write_bytes(buf.getvalue())
    (out / "gold.diff").write_text(udiff(spec["file"], buggy, good))
    (out / "wrong.diff").write_text(udiff(spec["file"], buggy, wrong))
    f.write_text(good)
    after = pytest_outcomes(repo, ids)
    assert all(after.values()), after
    (out / "instance.json").write_text(json.dumps({
        "source": spec["sdist"], "fail_to_pass": spec["fail_to_pass"],
        "pass_to_pass": spec["pass_to_pass"], "test_command": "python3 -m pytest"}, indent=2) + "\n")
    print(f"{spec['name']}: {(out / 'repo.tar.gz').stat().st_size} bytes")


if __name__ == "__main__":
    for spec in INSTANCES:
        with tempfile.TemporaryDirectory() as tmp:
            build(spec, Path(tmp))
