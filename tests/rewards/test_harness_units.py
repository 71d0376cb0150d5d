"""Host-side units of the sandboxed verifiers: the SWE judge, the tree repair and seal, the
canary insertion, and the plain-data codec (no container needed)."""

from __future__ import annotations

import json
import math
import os
import random

import pytest

from rewards.harness import codec, swe_tree
from rewards.swe import judge, make_canaries, outcome, pytest_args

pytestmark = pytest.mark.unit
OK = {"setup": "passed", "call": "passed", "teardown": "passed"}
FAIL = {"setup": "passed", "call": "failed", "teardown": "passed"}


def stream(*docs) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


CAN = {"t.py::test_p": "passed", "t.py::test_f": "failed", "t.py::TestC::test_m": "failed"}
CANARY_REPORTS = [{"test": "t.py::test_p", "phases": OK}, {"test": "t.py::test_f", "phases": FAIL},
                  {"test": "t.py::TestC::test_m", "phases": FAIL}]


def test_outcome_of_phases():
    assert outcome(OK) == "passed"
    assert outcome(FAIL) == "failed"
    assert outcome({"setup": "failed"}) == "error"
    assert outcome({"setup": "passed", "call": "passed", "teardown": "failed"}) == "error"
    assert outcome({"setup": "skipped", "teardown": "passed"}) == "skipped"
    assert outcome({"setup": "passed", "call": "passed"}) == "missing"
    assert outcome("passed") == "malformed" and outcome({"call": 1}) == "malformed"


def test_judge_clean_run():
    reports = stream({"test": "t.py::a", "phases": OK}, {"test": "t.py::b", "phases": FAIL},
                     *CANARY_REPORTS, {"done": 1})
    outcomes, problems = judge(reports, ["t.py::a", "t.py::b", "t.py::c"], CAN, 1, [])
    assert outcomes == {"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "missing"}
    assert problems == []


@pytest.mark.parametrize("case, expected", [
    ("duplicate", "t.py::a reported twice"),
    ("extra", "unexpected report for t.py::zzz"),
    ("no_done", "no end-of-session report (the test process ended early or was killed)"),
    ("canary_flipped", "canary t.py::test_f: expected failed, got passed"),
    ("canary_missing", "canary t.py::TestC::test_m: expected failed, got missing"),
    ("exit_0", "exit status 0 (session 1); a run with failing canaries exits 1"),
    ("garbage", "a report line is not JSON"),
    ("tree", "test tree changed during the run: tests/"),
])
def test_judge_finds_each_integrity_problem(case, expected):
    docs = [{"test": "t.py::a", "phases": OK}, *CANARY_REPORTS, {"done": 1}]
    exit_code, tree = 1, []
    if case == "duplicate":
        docs.insert(1, {"test": "t.py::a", "phases": OK})
    elif case == "extra":
        docs.insert(1, {"test": "t.py::zzz", "phases": OK})
    elif case == "no_done":
        docs.pop()
    elif case == "canary_flipped":
        docs[2] = {"test": "t.py::test_f", "phases": OK}
    elif case == "canary_missing":
        docs.pop(3)
    elif case == "exit_0":
        exit_code = 0
    elif case == "tree":
        tree = ["tests/"]
    reports = stream(*docs) + ("not json\n" if case == "garbage" else "")
    _, problems = judge(reports, ["t.py::a"], CAN, exit_code, tree)
    assert problems == [expected]


def test_canaries_are_random_and_typed():
    spec, expected = make_canaries(["a/test_x.py", "test_y.py"])
    assert set(spec) == {"a/test_x.py", "test_y.py"}
    c = spec["test_y.py"]
    assert c["passing"] != c["failing"] and c["a"] != c["b"]
    assert expected == {f"test_y.py::{c['passing']}": "passed", f"test_y.py::{c['failing']}": "failed",
                        f"test_y.py::{c['cls']}::{c['method']}": "failed",
                        **{k: v for k, v in expected.items() if k.startswith("a/")}}
    assert make_canaries(["t.py"])[0] != make_canaries(["t.py"])[0]


def test_test_args_accepts_pytest_commands_only():
    assert pytest_args({}) == []
    assert pytest_args({"test_command": "python3 -m pytest -x -p no:warnings"}) == ["-x", "-p", "no:warnings"]
    assert pytest_args({"test_args": ["-k", "x"]}) == ["-k", "x"]
    with pytest.raises(ValueError, match="must run pytest"):
        pytest_args({"test_command": "bash -c 'echo passed'"})
    with pytest.raises(ValueError, match="list of strings"):
        pytest_args({"test_args": "-k x"})


# ---- the tree ---------------------------------------------------------------------------------
def make_tree(root) -> None:
    files = {"pkg/__init__.py": "x = 1\n", "pkg/tests/__init__.py": "", "pkg/tests/helpers.py": "h\n",
             "pkg/tests/test_a.py": "def test_a(): pass\n", "conftest.py": "c\n",
             "setup.cfg": "[tool:pytest]\n", "pkg.egg-info/entry_points.txt": "[x]\n"}
    for rel, text in files.items():
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)


def test_snapshot_protects_the_test_tree_and_config(tmp_path):
    make_tree(tmp_path)
    snap = swe_tree.snapshot(str(tmp_path), ["pkg/tests/test_a.py"])
    assert sorted(snap["content"]) == ["conftest.py", "pkg.egg-info/entry_points.txt",
                                       "pkg/tests/__init__.py", "pkg/tests/helpers.py",
                                       "pkg/tests/test_a.py", "setup.cfg"]
    assert "pkg/__init__.py" in snap["files"] and "pkg/__init__.py" not in snap["content"]


def test_repair_restores_and_removes_with_reasons(tmp_path):
    make_tree(tmp_path)
    tests = ["pkg/tests/test_a.py"]
    snap = swe_tree.snapshot(str(tmp_path), tests)
    edits = {"pkg/tests/helpers.py": "hacked\n", "conftest.py": "hacked\n", "pkg/__init__.py": "x = 2\n",
             "pkg/sub/conftest.py": "c\n", "pytest.ini": "[pytest]\n", "pkg/evil.pth": "import os\n",
             "sitecustomize.py": "s\n", "evil-1.dist-info/entry_points.txt": "[pytest11]\n",
             "pkg/__pycache__/mod.cpython-311.pyc": "b\n", "pkg/tests/test_new.py": "t\n",
             "pkg/new.py": "fine\n"}
    for rel, text in edits.items():
        os.makedirs(os.path.join(tmp_path, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(tmp_path, rel), "w") as f:
            f.write(text)
    os.unlink(tmp_path / "pkg/tests/__init__.py")
    os.symlink("../__init__.py", tmp_path / "pkg/tests/link.py")
    restored, removed = swe_tree.repair(str(tmp_path), snap, tests)
    assert restored == ["conftest.py", "pkg/tests/__init__.py", "pkg/tests/helpers.py"]
    assert removed == {"pkg/sub/conftest.py": "test configuration", "pytest.ini": "test configuration",
                       "pkg/evil.pth": "interpreter start-up hook",
                       "sitecustomize.py": "interpreter start-up hook",
                       "evil-1.dist-info/entry_points.txt": "package metadata (plug-in entry points)",
                       "pkg/__pycache__/mod.cpython-311.pyc": "compiled bytecode",
                       "pkg/tests/test_new.py": "file added to the test tree",
                       "pkg/tests/link.py": "symbolic link"}
    assert (tmp_path / "pkg/tests/helpers.py").read_text() == "h\n"
    assert (tmp_path / "pkg/__init__.py").read_text() == "x = 2\n"  # the fix itself stays
    assert (tmp_path / "pkg/new.py").exists()
    assert not (tmp_path / "evil-1.dist-info").exists() and not (tmp_path / "pkg/__pycache__").exists()


def test_seal_sees_rewrites_renames_and_new_entries(tmp_path):
    make_tree(tmp_path)
    tests = ["pkg/tests/test_a.py"]
    root = str(tmp_path)
    base = swe_tree.seal(root, tests)
    assert swe_tree.seal_changes(base, swe_tree.seal(root, tests)) == []
    (tmp_path / "pkg/__init__.py").write_text("not protected\n")
    assert swe_tree.seal_changes(base, swe_tree.seal(root, tests)) == []
    data = (tmp_path / "pkg/tests/test_a.py").read_bytes()
    st = os.stat(tmp_path / "pkg/tests/test_a.py")
    (tmp_path / "pkg/tests/test_a.py").write_bytes(data)  # same bytes, mtime set back
    os.utime(tmp_path / "pkg/tests/test_a.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert swe_tree.seal_changes(base, swe_tree.seal(root, tests)) == ["pkg/tests/test_a.py"]
    base = swe_tree.seal(root, tests)
    (tmp_path / "pkg/tests/conftest.py").write_text("x\n")
    os.unlink(tmp_path / "pkg/tests/conftest.py")  # added and removed again: the dir saw it
    assert swe_tree.seal_changes(base, swe_tree.seal(root, tests)) == ["pkg/tests/"]


def test_canaries_land_between_top_level_statements(tmp_path):
    src = ('"""doc."""\nfrom __future__ import annotations\nimport os\n\n@deco\ndef test_a():\n'
           '    x = (1,\n         2)\n\nclass T:\n    def test_b(self):\n        pass\n')
    (tmp_path / "t.py").write_text(src)
    assert swe_tree.insertion_points(src) == [2, 3, 8, 12]
    c = {"tag": "u", "passing": "test_p", "failing": "test_f", "cls": "TestC", "method": "test_m",
         "a": 5, "b": 6}
    for seed in range(20):
        (tmp_path / "t.py").write_text(src)
        swe_tree.add_canaries(str(tmp_path), {"t.py": c}, random.Random(seed))
        out = (tmp_path / "t.py").read_text()
        ns: dict = {"deco": lambda f: f}
        exec(compile(out, "t.py", "exec"), ns)
        assert {"test_a", "T", "test_p", "test_f", "TestC"} <= set(ns)
        assert out.splitlines()[:2] == ['"""doc."""', "from __future__ import annotations"]
    assert swe_tree.insertion_points("def broken(:\n") == [1]


def test_pytest_config_follows_pytest_precedence(tmp_path):
    make_tree(tmp_path)
    root = str(tmp_path)
    assert swe_tree.pytest_config(root, ["pkg/tests/test_a.py"]) == os.path.join(root, "setup.cfg")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest section
    assert swe_tree.pytest_config(root, ["pkg/tests/test_a.py"]) == os.path.join(root, "setup.cfg")
    (tmp_path / "pkg/tests/pytest.ini").write_text("")
    assert swe_tree.pytest_config(root, ["pkg/tests/test_a.py"]) == os.path.join(root, "pkg/tests/pytest.ini")
    os.unlink(tmp_path / "setup.cfg")
    assert swe_tree.pytest_config(root, ["pkg/__init__.py"]) is None


# ---- the codec --------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, True, 0, -10**50, 1.5, math.inf, 2 + 3j, "s", b"\x00\xff",
                                   [1, [2, (3,)]], {"a": {1, 2}, (1, 2): frozenset({3})}, ()])
def test_codec_round_trips_plain_values_exactly(value):
    back = codec.dec(json.loads(json.dumps(codec.enc(value))))
    assert back == value and type(back) is type(value)


def test_codec_refuses_subclasses_and_foreign_encodings():
    class Sub(int):
        pass

    with pytest.raises(TypeError):
        codec.enc(Sub(1))
    with pytest.raises(TypeError):
        codec.enc([object()])
    for bad in [{"i": 1}, {"x": "1"}, {"t": "ab"}, {"i": "1", "f": "2"}, {"b": "!!"}]:
        with pytest.raises((ValueError, TypeError)):
            codec.dec(bad)
    deep: list = []
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ValueError, match="deeply"):
        codec.enc(deep)


def test_has_nan_looks_everywhere():
    assert codec.has_nan(math.nan) and codec.has_nan([1, (2, {3: math.nan})])
    assert codec.has_nan(complex(0, math.nan)) and codec.has_nan({math.nan: 1})
    assert not codec.has_nan([math.inf, -math.inf, 1.0, "nan"])
