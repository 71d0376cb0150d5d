"""SWE verifier on SWE-bench-style instances built from PyPI sdists (tests/data/swe)."""

import json
import tarfile
from pathlib import Path

import pytest

from rewards import get_verifier
from rewards.swe import extract_patch

DATA = Path(__file__).resolve().parents[1] / "data" / "swe"
INSTANCES = sorted(p.name for p in DATA.iterdir() if (p / "instance.json").is_file())


def task_of(name: str) -> dict:
    inst = json.loads((DATA / name / "instance.json").read_text())
    return dict(inst, repo=str(DATA / name / "repo.tar.gz"))


def diff(name: str, kind: str) -> str:
    return (DATA / name / f"{kind}.diff").read_text()


def fenced(d: str) -> str:
    return f"I fixed it.\n```diff\n{d}```\n"




@pytest.fixture(scope="module")
def v(sandbox_image):
    return get_verifier("swe", image=sandbox_image, pool_size=2, test_timeout=120,
                        regression_score=-0.5, apply_fail_score=-1.0, no_patch_score=-0.25)


@pytest.mark.unit
def test_extract_patch():
    d = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert extract_patch(fenced(d)) == d
    assert extract_patch("Here:\n" + d) == d
    assert extract_patch("```diff\nold\n```\n```diff\n" + d + "```") == d
    assert extract_patch("no diff at all") is None


@pytest.mark.unit
def test_instances_are_small():
    assert len(INSTANCES) >= 2
    assert sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file()) < 1_000_000


@pytest.mark.docker
@pytest.mark.parametrize("name", INSTANCES)
def test_gold_passes_wrong_and_no_patch_fail(v, name):
    task = task_of(name)
    res = v.batch([fenced(diff(name, "gold")), fenced(diff(name, "wrong")), "I could not fix it."],
                  [task] * 3)
    gold, wrong, none = res
    assert (gold.score, gold.correct) == (1.0, True), gold.info
    assert gold.info["failed_fail_to_pass"] == [] and gold.info["broken_pass_to_pass"] == []
    assert wrong.correct is False and wrong.score <= 0, wrong.info
    assert wrong.info["failed_fail_to_pass"] or wrong.info["broken_pass_to_pass"]
    assert (none.score, none.correct, none.info["status"]) == (-0.25, False, "no_patch")
    assert all("queue_s" in r.info for r in res)


@pytest.mark.docker
def test_wrong_kinds_get_their_scores(v):
    # inflection: the wrong fix leaves FAIL_TO_PASS failing -> fail_score 0
    r = v(fenced(diff("inflection_dasherize", "wrong")), task_of("inflection_dasherize"))
    assert r.score == 0.0 and r.info["failed_fail_to_pass"] and not r.info["broken_pass_to_pass"]
    # toolz: the wrong fix breaks a PASS_TO_PASS test -> regression_score
    r = v(fenced(diff("toolz_frequencies", "wrong")), task_of("toolz_frequencies"))
    assert r.score == -0.5
    assert r.info["broken_pass_to_pass"] == ["toolz/tests/test_itertoolz.py::test_interpose_empty"]


@pytest.mark.docker
def test_patch_that_does_not_apply(v):
    bad = diff("toolz_frequencies", "gold").replace("d[item] = 1", "d[item] = 7")
    r = v(fenced(bad), task_of("toolz_frequencies"))
    assert (r.score, r.info["status"]) == (-1.0, "apply_failed") and r.info["log"]


@pytest.mark.docker
def test_patch_cannot_rewrite_the_tests(v):
    # "fix" by editing the failing test and adding a conftest that passes everything
    name = "inflection_dasherize"
    hack = ("diff --git a/test_inflection.py b/test_inflection.py\n"
            "--- a/test_inflection.py\n+++ b/test_inflection.py\n"
            "@@ -423,4 +423,4 @@\n"
            " @pytest.mark.parametrize((\"input\", \"expected\"), UNDERSCORES_TO_DASHES)\n"
            " def test_dasherize(input, expected):\n"
            "-    assert inflection.dasherize(input) == expected\n"
            "+    assert True\n"
            " \n"
            "diff --git a/conftest.py b/conftest.py\n"
            "new file mode 100644\n--- /dev/null\n+++ b/conftest.py\n@@ -0,0 +1,3 @@\n"
            "+import pytest\n"
            "+def pytest_runtest_call(item):\n"
            "+    pytest.skip('everything passes')\n")
    r = v(fenced(hack), task_of(name))
    assert r.info["status"] == "ran", r.info
    assert r.info["restored"] == ["test_inflection.py"]
    assert r.info["removed"] == {"conftest.py": "test configuration"}
    assert r.score == 0.0 and r.info["failed_fail_to_pass"]


@pytest.mark.docker
def test_repo_given_as_directory(v, tmp_path):
    with tarfile.open(DATA / "inflection_dasherize" / "repo.tar.gz") as t:
        t.extractall(tmp_path, filter="data")
    task = dict(task_of("inflection_dasherize"), repo=str(tmp_path / "repo"))
    assert v(fenced(diff("inflection_dasherize", "gold")), task).score == 1.0


