"""Rewards: verifier interface, registry, built-in verifiers and synthetic tasks."""

from rewards.base import (
    BaseVerifier,
    FunctionVerifier,
    RewardResult,
    Verifier,
    VerifierUnavailable,
    available_verifiers,
    get_verifier,
    is_unjudged,
    register_verifier,
    safe_call,
)

__all__ = [
    "BaseVerifier",
    "FunctionVerifier",
    "RewardResult",
    "Verifier",
    "VerifierUnavailable",
    "available_verifiers",
    "get_verifier",
    "is_unjudged",
    "register_verifier",
    "safe_call",
]
