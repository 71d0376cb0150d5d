"""Sandbox images built without a registry.

Two ways to get an image:

* **debootstrap** (default, works offline except for the Debian mirror apt already uses):
  ``python -m sandboxes build-image`` runs
  ``debootstrap --variant=minbase --include=python3,python3-pytest,git,patch bookworm DIR MIRROR``,
  adds the unprivileged ``sandbox`` user (uid 1000), then ``tar -C DIR -c . | docker import``.
  The tag is ``m1rl-sandbox:<hash>``, a hash of everything that decides the content (suite,
  variant, package list, recipe version), so building twice is a no-op.
  **Adding packages:** pass Debian package names, e.g.
  ``python -m sandboxes build-image --packages python3-numpy,python3-sympy``; the tag changes with
  the list, and ``SandboxPool(image=tag)`` uses it.
* **Dockerfile** (where a registry is reachable): ``python -m sandboxes build-image --dockerfile
  path/to/Dockerfile`` runs ``docker build`` on the file's folder, tagged by the hash of the
  folder's files. The image must provide ``python3`` (the in-container agent is Python) and a
  writable-by-nobody-needed root: the pool mounts its own tmpfs work dirs and runs as uid 1000.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_PACKAGES = ("python3", "python3-pytest", "git", "patch")
DEFAULT_SUITE = "bookworm"
IMAGE_REPO = "m1rl-sandbox"
_RECIPE_VERSION = "1"  # bump when the rootfs recipe below changes
SANDBOX_UID = 1000
_FALLBACK_MIRROR = "http://deb.debian.org/debian"


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine (first non-security ``deb``/``URIs`` entry)."""
    paths = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        paths += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for p in paths:
        try:
            text = p.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            m = re.match(r"^URIs:\s*(\S+)", line) or re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if m and "debian" in m.group(1) and "security" not in m.group(1):
                return m.group(1).rstrip("/")
    return _FALLBACK_MIRROR


def image_tag(packages: tuple[str, ...] = DEFAULT_PACKAGES, suite: str = DEFAULT_SUITE) -> str:
    """Content tag of the debootstrap image for this package list (no build)."""
    key = "\n".join([_RECIPE_VERSION, suite, "minbase", *sorted(set(packages))])
    return f"{IMAGE_REPO}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def default_image() -> str:
    return os.environ.get("M1RL_SANDBOX_IMAGE") or image_tag()


def image_exists(tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    return r.returncode == 0


def _write_user(root: Path) -> None:
    with open(root / "etc/passwd", "a") as f:
        f.write(f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/work:/bin/sh\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"sandbox:x:{SANDBOX_UID}:\n")
    (root / "work").mkdir(exist_ok=True)
    # Mount points the pool covers with tmpfs; nothing else in the root is writable.
    os.chmod(root / "work", 0o1777)


def build_debootstrap(packages: tuple[str, ...] = DEFAULT_PACKAGES, suite: str = DEFAULT_SUITE,
                      mirror: str | None = None, force: bool = False, quiet: bool = False) -> str:
    """Build (or find) the debootstrap image and return its tag. Needs root and debootstrap."""
    tag = image_tag(packages, suite)
    lock_path = Path(tempfile.gettempdir()) / "m1rl-sandbox-build.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builders at once would race on the same tag
        if not force and image_exists(tag):
            return tag
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is not installed (scripts/ensure_docker.sh installs it)")
        mirror = mirror or apt_mirror()
        out = subprocess.DEVNULL if quiet else None
        with tempfile.TemporaryDirectory(prefix="m1rl-rootfs-") as tmp:
            root = Path(tmp) / "rootfs"
            cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                   suite, str(root), mirror]
            print(f"[sandboxes] {' '.join(cmd)}", file=sys.stderr)
            subprocess.run(cmd, check=True, stdout=out)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (root / junk).glob("*"):
                    if p.is_file():
                        p.unlink()
            _write_user(root)
            print(f"[sandboxes] docker import -> {tag}", file=sys.stderr)
            tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                                   stdout=subprocess.PIPE)
            imp = subprocess.run(["docker", "import", "--change", "WORKDIR /work",
                                  "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-", tag],
                                 stdin=tar.stdout, stdout=out, check=False)
            tar.stdout.close()  # type: ignore[union-attr]
            if tar.wait() != 0 or imp.returncode != 0:
                raise RuntimeError(f"building {tag} failed (tar {tar.returncode}, import {imp.returncode})")
    return tag


def build_dockerfile(dockerfile: str | os.PathLike, tag: str | None = None) -> str:
    """``docker build`` a user Dockerfile (needs a reachable registry for its FROM); tag by content."""
    path = Path(dockerfile).resolve()
    ctx = path.parent
    h = hashlib.sha256()
    for p in sorted(ctx.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(ctx)).encode())
            h.update(p.read_bytes())
    tag = tag or f"{IMAGE_REPO}-custom:{h.hexdigest()[:16]}"
    if not image_exists(tag):
        subprocess.run(["docker", "build", "-f", str(path), "-t", tag, str(ctx)], check=True)
    return tag
