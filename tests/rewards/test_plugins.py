"""Plug-in contract: a dummy verifier loaded through the real loader, by import path and by the
``m1rl.verifiers`` entry-point group, plus registry errors and failure isolation."""

import importlib
import sys
import textwrap

import pytest

from rewards import RewardResult, available_verifiers, get_verifier
from rewards.base import ENTRY_POINT_GROUP

pytestmark = pytest.mark.unit

PLUGIN = textwrap.dedent('''
    from rewards import RewardResult

    class Grader:
        """A class plug-in: options go to __init__."""
        def __init__(self, target="42"):
            self.target = target
        def __call__(self, response, task):
            ok = response.strip() == self.target
            return RewardResult(float(ok), ok, {"plugin": "class"})

    def grade(response, task, bonus=0.0):
        """A function plug-in returning a float."""
        return float(response == task["answer"]) + bonus

    def flag(response, task):
        return response == "yes"

    def broken(response, task):
        raise RuntimeError("plug-in bug")

    def wrong_type(response, task):
        return "not a reward"

    NOT_CALLABLE = 3
''')


@pytest.fixture
def plugin_pkg(tmp_path, monkeypatch):
    name = f"m1rl_dummy_plugin_{tmp_path.name.replace('-', '_')}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rewards.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def test_class_plugin_by_import_path(plugin_pkg):
    v = get_verifier(f"{plugin_pkg}.rewards:Grader", target="7")
    assert v("7", {}).score == 1.0 and v("8", {}).score == 0.0
    assert [r.score for r in v.batch(["7", "8"], [{}, {}])] == [1.0, 0.0]


def test_function_plugins_by_import_path(plugin_pkg):
    v = get_verifier(f"{plugin_pkg}.rewards:grade", bonus=0.5)
    assert v("a", {"answer": "a"}).score == 1.5
    r = get_verifier(f"{plugin_pkg}.rewards:flag")("yes", {})
    assert (r.score, r.correct) == (1.0, True)


def test_plugin_failures_are_recorded_not_raised(plugin_pkg):
    r = get_verifier(f"{plugin_pkg}.rewards:broken")("x", {})
    assert r.score == 0.0 and "RuntimeError: plug-in bug" in r.info["error"]
    r = get_verifier(f"{plugin_pkg}.rewards:wrong_type")("x", {})
    assert r.score == 0.0 and "plug-in returned str" in r.info["error"]


@pytest.mark.parametrize("path,message", [
    ("no_such_module_xyz:f", "cannot import module"),
    ("rewards.base:nope", "has no attribute"),
    (":f", "must look like"),
])
def test_bad_import_paths(path, message):
    with pytest.raises(ValueError, match=message):
        get_verifier(path)


def test_not_callable_plugin(plugin_pkg):
    with pytest.raises(TypeError):
        get_verifier(f"{plugin_pkg}.rewards:NOT_CALLABLE")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as exc:
        get_verifier("no-such-verifier")
    for name in ("math", "format", "countdown", "logic"):
        assert name in str(exc.value)


def test_entry_point_plugin(plugin_pkg, tmp_path, monkeypatch):
    dist = tmp_path / "m1rl_dummy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: m1rl-dummy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ndummy_grader = {plugin_pkg}.rewards:Grader\n"
        f"dummy_fn = {plugin_pkg}.rewards:grade\n")
    importlib.invalidate_caches()
    assert {"dummy_grader", "dummy_fn"} <= set(available_verifiers())
    v = get_verifier("dummy_grader", target="ok")
    assert v("ok", {}).score == 1.0
    assert get_verifier("dummy_fn")("a", {"answer": "a"}).score == 1.0


def test_builtins_registered():
    names = set(available_verifiers())
    assert {"math", "format", "countdown", "logic"} <= names
    assert isinstance(get_verifier("math")("\\boxed{1}", {"answer": "1"}), RewardResult)
