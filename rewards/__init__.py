"""Rewards: verifier interface, registry, built-in verifiers and synthetic tasks."""

from rewards.base import (
    BaseVerifier,
    FunctionVerifier,
    RewardResult,
    Verifier,
    available_verifiers,
    get_verifier,
    register_verifier,
    safe_call,
)

__all__ = [
    "BaseVerifier",
    "FunctionVerifier",
    "RewardResult",
    "Verifier",
    "available_verifiers",
    "get_verifier",
    "register_verifier",
    "safe_call",
]
