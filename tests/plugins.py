"""Plug-in verifiers used by the integration tests (loaded by import path, like a user's)."""

from pathlib import Path

from rewards import RewardResult, VerifierUnavailable


def digit_count(response: str, task: dict) -> RewardResult:
    """A dense reward any random model gets variance on: the fraction of digits."""
    digits = sum(ch.isdigit() for ch in response)
    return RewardResult(digits / max(len(response), 1), None, {"digits": digits})


def broken(response: str, task: dict) -> RewardResult:
    """A verifier whose backend is down: every call raises (a recorded error, never a crash)."""
    raise RuntimeError("verifier backend down")


def reads_answer(response: str, task: dict) -> RewardResult:
    """Reads ``task["answer"]`` on every call (a task without it is an unjudged sample)."""
    answer = str(task["answer"])
    return RewardResult(float(answer in response), answer in response, {})


def any_digit(response: str, task: dict) -> RewardResult:
    """Correct when the response holds a digit: a random tiny model gets about half right."""
    ok = any(ch.isdigit() for ch in response)
    return RewardResult(float(ok), ok, {})


class Lifecycle:
    """Scores 1.0; its backend check fails when ``down``; ``close`` leaves a mark in ``marks``."""

    def __init__(self, marks: str, down: bool = False):
        self.marks, self.down = Path(marks), down

    def __call__(self, response: str, task: dict) -> RewardResult:
        return RewardResult(1.0, True, {})

    def batch(self, responses, tasks):
        return [self(r, t) for r, t in zip(responses, tasks, strict=True)]

    def preflight(self) -> None:
        (self.marks / "preflight").touch()
        if self.down:
            raise VerifierUnavailable("Lifecycle: the backend is down (start it with `make up`)")

    def close(self) -> None:
        (self.marks / "closed").touch()
