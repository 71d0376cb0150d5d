"""Synthetic tasks: seeded generators, reference solvers that verify, rule verifiers, files."""

import pytest

from rewards import get_verifier
from rewards.tasks import countdown, countdown_compact, logic

pytestmark = pytest.mark.unit

KEYS = {"prompt", "answer", "solution", "verifier", "id", "difficulty"}


@pytest.mark.parametrize("mod", [countdown, countdown_compact, logic],
                         ids=["countdown", "countdown_compact", "logic"])
def test_generate_is_seeded_and_shaped(mod):
    a, b = mod.generate(5, difficulty=2, seed=3), mod.generate(5, difficulty=2, seed=3)
    assert a == b and len(a) == 5
    assert a != mod.generate(5, difficulty=2, seed=4)
    assert KEYS <= set(a[0])
    with pytest.raises(ValueError):
        mod.generate(1, difficulty=0)


@pytest.mark.parametrize("mod", [countdown, countdown_compact, logic],
                         ids=["countdown", "countdown_compact", "logic"])
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4])
def test_reference_solutions_verify(mod, difficulty):
    tasks = mod.generate(6, difficulty=difficulty, seed=0)
    v = get_verifier(tasks[0]["verifier"])
    for t in tasks:
        assert mod.solve(t) == t["solution"]
        r = v(t["solution"], t)
        assert r.score == 1.0 and r.correct, r.info


@pytest.mark.parametrize("mod", [countdown, countdown_compact, logic],
                         ids=["countdown", "countdown_compact", "logic"])
def test_traces_grow_with_difficulty(mod):
    def mean_lines(d):
        return sum(t["solution"].count("\n") for t in mod.generate(8, difficulty=d, seed=1)) / 8

    assert mean_lines(4) > mean_lines(1)


def test_countdown_solver_backtracks():
    t = countdown.generate(4, difficulty=3, seed=0)
    assert any("backtrack" in x["solution"] for x in t)


def test_countdown_verifier_rules():
    task = {"numbers": [3, 7, 25, 25], "target": 46, "answer": "46"}
    v = get_verifier("countdown")
    assert v("<think>.</think>\\boxed{3*7+25}", task).score == 1.0
    assert v("<think>.</think>\\boxed{(25+25) - (7-3)}", task).score == 1.0
    assert v("<think>.</think>\\boxed{3 \\times 7 + 25 = 46}", task).score == 1.0
    r = v("<think>.</think>\\boxed{3*7+25+0*3}", task)  # 3 used twice, 0 not given
    assert r.score == 0.0 and "not available" in r.info["reason"]
    assert v("<think>.</think>\\boxed{3*7+24}", task).info["reason"].startswith("numbers not available")
    assert v("<think>.</think>\\boxed{25+25}", task).info["reason"] == "wrong value"
    assert v("\\boxed{3*7+25}", task).info["reason"] == "no </think>"
    assert v("<think>.</think>\\boxed{3*7+25}", task).correct is True


@pytest.mark.parametrize("expr", ["__import__('os').system('x')", "2**99999", "3*7+", "(" * 80 + "1",
                                  "7/(3-3)", "-3+7", "1" * 400])
def test_countdown_rejects_non_arithmetic(expr):
    r = get_verifier("countdown")(f"<think>.</think>\\boxed{{{expr}}}", {"numbers": [3, 7], "target": 4})
    assert r.score == 0.0


def test_countdown_evaluate_is_exact():
    from fractions import Fraction

    assert countdown.evaluate("(1+2)/3*7") == (Fraction(7), [1, 2, 3, 7])
    assert countdown.evaluate("10/4")[0] == Fraction(5, 2)


def test_logic_verifier_checks_clues_not_string():
    t = logic.generate(1, difficulty=2, seed=0)[0]
    v = get_verifier("logic")
    good = "<think>.</think>\\boxed{" + t["answer"] + "}"
    assert v(good, t).score == 1.0
    assert v(good.replace(", ", " , "), t).score == 1.0
    wrong = list(reversed(t["answer"].split(", ")))
    r = v("<think>.</think>\\boxed{" + ", ".join(wrong) + "}", t)
    assert r.score == 0.0 and "clues broken" in r.info["reason"]
    assert v("<think>.</think>\\boxed{A, A, B, C}", t).info["reason"] == "not an ordering of the names"


def test_logic_puzzles_have_unique_solutions():
    for t in logic.generate(5, difficulty=3, seed=2):
        assert len(logic._solutions(t["names"], t["clues"], limit=3)) == 1


def test_datasets_roundtrip(tmp_path):
    import datasets

    from rewards.tasks.datasets import write_dataset

    for task in ("countdown", "logic"):
        for suffix in (".parquet", ".jsonl"):
            path = write_dataset(task, 4, tmp_path / f"{task}{suffix}", difficulty=2, seed=0)
            kind = "parquet" if suffix == ".parquet" else "json"
            ds = datasets.load_dataset(kind, data_files=str(path))["train"]
            assert len(ds) == 4
            row = ds[0]
            assert get_verifier(row["verifier"])(row["solution"], row).score == 1.0


def test_countdown_compact_is_short_with_a_dead_end_mark_per_failed_attempt():
    rows = countdown_compact.generate(400, difficulty=1, seed=1)
    lengths = sorted(len(r["solution"]) for r in rows)
    assert lengths[200] < 160 and max(len(r["prompt"]) for r in rows) < 50  # median, prompt
    task = {"numbers": [1, 3, 8], "target": 5, "construction": "8-(1*3)"}
    assert countdown_compact.solve(task) == (
        "<think>1+3=4\n 8+4=12 x\n 8-4=4 x\n 8*4=32 x\n 8/4=2 x\n1*3=3\n 8+3=11 x\n 8-3=5 !"
        "</think>\\boxed{8-(1*3)}")
