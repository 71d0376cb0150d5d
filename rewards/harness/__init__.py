"""Programs that run *inside* the sandbox, shipped as files (read here, written into the
container's work dir for each run). They are ordinary modules: linted, and unit-tested on the
host where they do not need a container (``codec``, the SWE tree checks).

Each is self-contained (standard library only, Python 3.8+) and imports its siblings as top-level
modules from its own directory, because in the sandbox they live in ``/work/.m1rl/``:

* ``codec``: plain-data encoding for values that cross a pipe (exact built-in types only);
* ``proc``: kill every other process, read a child's output with caps and a deadline;
* ``code_checker`` / ``code_candidate``: the code verifier's trusted checker and untrusted side;
* ``swe_supervisor`` / ``swe_runner`` / ``swe_report``: the SWE verifier's trusted supervisor, the
  trusted start of the test process, and the pytest plug-in that reports each outcome.
"""

from __future__ import annotations

from pathlib import Path

DIR = "/work/.m1rl"  # where the programs live inside the sandbox
_HERE = Path(__file__).parent


def source(name: str) -> bytes:
    """The source of the program ``name`` (a module of this folder)."""
    return (_HERE / f"{name}.py").read_bytes()


def files(*names: str) -> dict[str, bytes]:
    """``{".m1rl/<name>.py": source}`` for :meth:`sandboxes.SandboxPool.run`'s ``files``."""
    return {f".m1rl/{n}.py": source(n) for n in names}
