"""The driver side: what runs in the driver process. The RL loop (loop.py) and the run it drives
(run.py): Ray and the roles (placement.py, roles.py: the group handles that fan calls out to the
learner and rollout actors), prompts (data.py, samples.py), scoring, evaluation, warm-up, length
windows, checkpoints and metrics files. Nothing here runs inside an actor; the maths of an update
is on the learner side (rlhf/learner/)."""

from rlhf.driver.loop import train

__all__ = ["train"]
