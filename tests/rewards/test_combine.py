"""Format reward and the weighted, routed RewardRouter (also with a plug-in)."""

import time

import pytest

from rewards import RewardResult, get_verifier
from rewards.combine import RewardRouter

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("response,score,reason", [
    ("<think>a</think> \\boxed{4}", 1.0, "ok"),
    ("<think>a \\boxed{4}", 0.0, "thinking not finished (no </think>)"),
    ("<think>a</think> 4", 0.0, "no boxed answer after the thinking section"),
    ("<think>\\boxed{4}</think> 4", 0.0, "no boxed answer after the thinking section"),
    ("</think></think>\\boxed{4}", 0.0, "2 </think> tags"),
])
def test_format_reward(response, score, reason):
    r = get_verifier("format")(response, {})
    assert (r.score, r.info["reason"]) == (score, reason)


def test_format_options():
    assert get_verifier("format", require_open=True)("a</think>\\boxed{1}", {}).score == 0.0
    assert get_verifier("format", require_think=False)("\\boxed{1}", {}).score == 1.0


SPECS = [
    {"name": "math", "weight": 1.0},
    {"name": "countdown", "weight": 2.0},
    {"name": "format", "weight": 0.1, "when": "*"},
]


def test_router_weights_and_routes():
    router = RewardRouter(SPECS, route_field="verifier")
    r = router("<think>.</think>\\boxed{4}", {"verifier": "math", "answer": "4"})
    assert r.score == pytest.approx(1.1) and r.correct is True
    assert set(r.info["parts"]) == {"math", "format"}
    task = {"verifier": "countdown", "numbers": [2, 2], "target": 4}
    r = router("<think>.</think>\\boxed{2+2}", task)
    assert r.score == pytest.approx(2.1) and r.correct is True
    r = router("no", {"verifier": "math", "answer": "4"})
    assert r.score == 0.0 and r.correct is False


def test_router_unknown_route_is_recorded():
    r = RewardRouter(SPECS)("x", {"verifier": "chess"})
    assert r.score == 0.0 and r.correct is None and "no verifier" in r.info["error"]
    r = RewardRouter(SPECS, default_route="math")("\\boxed{1}", {"answer": "1"})
    assert r.score == pytest.approx(1.0)


def test_router_when_lists_and_bad_specs():
    router = RewardRouter([{"name": "math", "when": ["gsm8k", "aime"]}], route_field="source")
    assert router("\\boxed{3}", {"source": "aime", "answer": "3"}).score == 1.0
    with pytest.raises(ValueError, match="unknown keys"):
        RewardRouter([{"name": "math", "wieght": 1}])
    with pytest.raises(ValueError, match="unknown verifier"):
        RewardRouter([{"name": "nope"}])


def test_router_batch_matches_calls_and_runs_verifiers_concurrently(tmp_path, monkeypatch):
    pkg = tmp_path / "m1rl_slow_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import time\nfrom rewards import RewardResult\n"
        "class Slow:\n"
        "    def __call__(self, response, task):\n"
        "        time.sleep(0.3)\n        return RewardResult(1.0, True, {})\n"
        "    def batch(self, responses, tasks):\n"
        "        time.sleep(0.3)\n        return [RewardResult(1.0, True, {}) for _ in responses]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = [{"name": "m1rl_slow_plugin:Slow", "when": "slow"},
             {"name": "m1rl_slow_plugin:Slow", "when": "slow2"}, {"name": "math"}]
    router = RewardRouter(specs)
    tasks = [{"verifier": "slow"}, {"verifier": "slow2"}, {"verifier": "math", "answer": "2"}] * 4
    responses = ["a", "b", "\\boxed{2}"] * 4
    router("\\boxed{2}", tasks[2])  # start the math worker pool outside the timing
    t = time.monotonic()
    out = router.batch(responses, tasks)
    assert time.monotonic() - t < 0.55  # the two slow verifiers overlapped
    assert all(isinstance(r, RewardResult) for r in out)
    assert [r.score for r in out] == [router(x, k).score for x, k in zip(responses, tasks, strict=True)]


def test_router_survives_a_raising_verifier(tmp_path, monkeypatch):
    pkg = tmp_path / "m1rl_bad_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def bad(response, task):\n    raise KeyError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    router = RewardRouter([{"name": "m1rl_bad_plugin:bad", "when": "*"}, {"name": "math"}])
    out = router.batch(["\\boxed{1}"], [{"verifier": "math", "answer": "1"}])
    assert out[0].score == 1.0
    assert "KeyError" in out[0].info["parts"]["m1rl_bad_plugin:bad"]["info"]["error"]


class _Flaky:
    """A plug-in whose backend is down for every other sample; counts lifecycle calls."""

    def __init__(self):
        self.preflights = self.closes = 0

    def __call__(self, response, task):
        if task.get("down"):
            return RewardResult(0.0, None, {"error": "backend down"})
        return RewardResult(1.0, True, {})

    def batch(self, responses, tasks):
        return [self(r, t) for r, t in zip(responses, tasks, strict=True)]

    def preflight(self):
        self.preflights += 1

    def close(self):
        self.closes += 1


def test_router_marks_unjudged_parts_and_reaches_every_verifier():
    from rewards import is_unjudged

    router = RewardRouter([{"name": "format", "weight": 0.5, "when": "*"},
                           {"name": "tests.plugins:digit_count"}], default_route="tests.plugins:digit_count")
    flaky = _Flaky()
    router.verifiers[1] = flaky
    ok, down = router.batch(["<think>.</think>\\boxed{1}"] * 2, [{}, {"down": True}])
    assert (ok.score, ok.correct, is_unjudged(ok)) == (1.5, True, False)
    assert down.correct is None and is_unjudged(down)
    assert down.info["error"] == "tests.plugins:digit_count: backend down"
    router.preflight()
    router.close()
    router.close()
    assert (flaky.preflights, flaky.closes) == (1, 2)
