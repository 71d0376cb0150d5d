"""Helpers for test suites that need the Docker engine and the sandbox image.

Docker tests must fail, not skip, when the engine is missing (deselect them with
``-m "not docker"`` instead); :func:`require_engine_and_image` raises with the fix to apply.
"""

from __future__ import annotations

import subprocess

from sandboxes.image import build_debootstrap, default_image, image_exists, image_tag


def require_engine_and_image() -> str:
    """Return the default sandbox image tag, building it if needed; raise if there is no engine."""
    r = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("no Docker engine answers `docker info` (start one with "
                           "`sudo scripts/ensure_docker.sh`, or deselect with -m 'not docker'): "
                           + (r.stderr.strip().splitlines() or [""])[-1])
    tag = default_image()
    if not image_exists(tag):
        if tag != image_tag():
            raise RuntimeError(f"sandbox image {tag} (M1RL_SANDBOX_IMAGE) does not exist")
        tag = build_debootstrap(quiet=True)
    return tag
