"""The SWE supervisor's work on the repository tree (pure filesystem code, unit-tested on the
host): extract the archive, snapshot what the tests are made of, repair the tree after the patch
and after the setup command, add canary tests, and seal the test tree so that a change made while
the tests run is seen.

What is *protected* (restored from the snapshot after the patch and after setup):
the test files named by the node ids, every file under a test directory on their path
(``tests/``, ``test/``, ``testing/``, ``*_tests/``, ...), every ``test_*.py`` / ``*_test.py`` and
``conftest.py`` anywhere, and every file pytest reads configuration from (``pytest.ini``,
``.pytest.ini``, ``tox.ini``, ``setup.cfg``, ``pyproject.toml``), anywhere.
What the patch may not *add* (removed): those names, ``*.pth``, ``sitecustomize.py``,
``usercustomize.py``, ``*.dist-info`` / ``*.egg-info`` trees (plug-in entry points), compiled
bytecode (``*.pyc``, ``__pycache__``: an unchecked-hash ``.pyc`` would replace its source) and
symbolic links.
"""

import ast
import os
import random
import re
import tarfile

CONFIG_NAMES = {"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml",
                "conftest.py"}
STARTUP_NAMES = {"sitecustomize.py", "usercustomize.py"}
_TEST_DIR = re.compile(r"^(tests?|testing)$|_tests?$|^tests?_", re.IGNORECASE)
_TEST_FILE = re.compile(r"^test_.*\.py$|^.*_test\.py$")
_META_DIR = re.compile(r"\.(dist|egg)-info$")


def extract(archive, repo):
    """Extract a ``.tar.gz`` into ``repo`` (a single top-level folder is stripped); links, devices,
    bytecode and paths leaving the tree are skipped."""
    with tarfile.open(archive) as t:
        members = t.getmembers()
        tops = {m.name.split("/")[0] for m in members}
        strip = len(tops) == 1 and any(m.isdir() and m.name in tops for m in members)
        for m in members:
            name = (m.name.split("/", 1) + [""])[1] if strip else m.name
            parts = name.split("/")
            if not name or name.startswith("/") or ".." in parts or "__pycache__" in parts:
                continue
            if not (m.isdir() or m.isfile()) or name.endswith((".pyc", ".pyo")):
                continue
            dest = os.path.join(repo, name)
            if m.isdir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(t.extractfile(m).read())
            os.chmod(dest, 0o755 if m.mode & 0o100 else 0o644)


def walk_files(repo):
    """Relative paths of the regular files and symlinks under ``repo`` (no directories)."""
    out = []
    for root, dirs, files in os.walk(repo):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.append(os.path.relpath(os.path.join(root, name), repo))
    return sorted(out)


def test_dirs(test_files):
    """Directories (relative) on the paths of the test files whose name marks a test tree."""
    out = set()
    for f in test_files:
        parts = f.split("/")[:-1]
        for i in range(len(parts)):
            if _TEST_DIR.search(parts[i]):
                out.add("/".join(parts[: i + 1]))
    return out


def is_protected(rel, test_files, dirs):
    name = os.path.basename(rel)
    return (rel in test_files or name in CONFIG_NAMES or bool(_TEST_FILE.match(name))
            or any(rel.startswith(d + "/") for d in dirs))


def snapshot(repo, test_files):
    """The pristine tree: ``{"files": every relative path, "content": {path: bytes}}`` with the
    content of every protected file and of the package metadata (entry points)."""
    dirs = test_dirs(test_files)
    files = walk_files(repo)
    content = {}
    for rel in files:
        if is_protected(rel, test_files, dirs) or any(_META_DIR.search(p) for p in rel.split("/")[:-1]):
            with open(os.path.join(repo, rel), "rb") as f:
                content[rel] = f.read()
    return {"files": set(files), "content": content}


def forbidden(rel):
    """Why a path the pristine tree did not have may not exist, or None."""
    parts = rel.split("/")
    name = parts[-1]
    if name in CONFIG_NAMES:
        return "test configuration"
    if name in STARTUP_NAMES or name.endswith(".pth"):
        return "interpreter start-up hook"
    if any(_META_DIR.search(p) for p in parts[:-1]):
        return "package metadata (plug-in entry points)"
    if "__pycache__" in parts or name.endswith((".pyc", ".pyo")):
        return "compiled bytecode"
    return None


def repair(repo, snap, test_files):
    """Restore protected files to the snapshot and remove what may not be there. Returns
    (restored paths, {removed path: reason})."""
    dirs = test_dirs(test_files)
    restored, removed = [], {}
    for rel in walk_files(repo):
        full = os.path.join(repo, rel)
        if os.path.islink(full):
            os.unlink(full)
            removed[rel] = "symbolic link"
        elif rel not in snap["files"]:
            why = forbidden(rel) or ("file added to the test tree"
                                     if is_protected(rel, test_files, dirs) else None)
            if why:
                os.unlink(full)
                removed[rel] = why
    for root, subdirs, _ in os.walk(repo, topdown=False):  # bytecode/metadata dirs left empty
        for d in subdirs:
            full = os.path.join(root, d)
            if (d == "__pycache__" or _META_DIR.search(d)) and not os.listdir(full):
                os.rmdir(full)
    for rel, content in snap["content"].items():
        full = os.path.join(repo, rel)
        if os.path.isdir(full) and not os.path.islink(full):
            _rmtree(full)
        if _read(full) != content:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(content)
            restored.append(rel)
    return sorted(restored), removed


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _rmtree(path):
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            full = os.path.join(root, d)
            os.unlink(full) if os.path.islink(full) else os.rmdir(full)
    os.rmdir(path)


CANARY_SRC = {
    "passing": "\n\ndef {passing}():\n    assert {a} == {a}\n\n",
    "failing": "\n\ndef {failing}():\n    assert {a} == {b}\n\n",
    "cls": ("\n\nimport unittest as {tag}\n\n\nclass {cls}({tag}.TestCase):\n"
            "    def {method}(self):\n        self.assertEqual({a}, {b})\n\n"),
}


def insertion_points(src):
    """Line numbers after which a top-level statement may be inserted (after any ``from
    __future__`` import); just the end of the file if the source does not parse."""
    lines = src.count("\n") + (0 if src.endswith("\n") or not src else 1)
    try:
        body = ast.parse(src).body
    except (SyntaxError, ValueError):
        return [lines]
    future = [n.end_lineno for n in body
              if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    first = max(future) if future else 0
    points = {n.end_lineno for n in body if n.end_lineno >= first} | {first, lines}
    return sorted(p for p in points if p >= first)


def add_canaries(repo, canaries, rand=None):
    """Insert the canary tests into their files, each at a random top-level position (so that
    they are not recognisable by place). ``canaries``: {file: {"tag", "passing", "failing",
    "cls", "method", "a", "b"}}, random names and numbers chosen by the host."""
    rand = rand or random.SystemRandom()
    for rel, c in canaries.items():
        path = os.path.join(repo, rel)
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            src = f.read()
        if src and not src.endswith("\n"):
            src += "\n"
        lines = src.splitlines(keepends=True)
        points = insertion_points(src)
        inserts = sorted(((rand.choice(points), k) for k in CANARY_SRC), reverse=True)
        for at, kind in inserts:
            lines.insert(at, CANARY_SRC[kind].format(**c))
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("".join(lines))


def seal(repo, test_files):
    """Identity of the test tree: (inode, ctime) of every protected file and every directory of
    a test tree or holding a test file. ctime cannot be set back by an unprivileged process, so
    any write, rename, chmod or entry added or removed while the tests run changes the seal."""
    dirs = test_dirs(test_files) | {os.path.dirname(f) for f in test_files if os.path.dirname(f)}
    out = {}
    for rel in walk_files(repo):
        if is_protected(rel, test_files, dirs):
            st = os.lstat(os.path.join(repo, rel))
            out[rel] = (st.st_ino, st.st_ctime_ns)
    for d in sorted(dirs):
        for root, _, _ in os.walk(os.path.join(repo, d)):
            st = os.lstat(root)
            out[os.path.relpath(root, repo) + "/"] = (st.st_ino, st.st_ctime_ns)
    return out


def seal_changes(before, after):
    """Paths whose identity changed, appeared or disappeared between two seals."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def pytest_config(repo, test_files):
    """The config file pytest would pick for these test files in this tree (nearest to their
    common directory, pytest's precedence within a directory), or None."""
    common = os.path.commonpath([os.path.dirname(f) or "." for f in test_files]) if test_files else "."
    d = os.path.normpath(common)
    while True:
        for name, marker in (("pytest.ini", None), (".pytest.ini", None),
                             ("pyproject.toml", "[tool.pytest.ini_options]"),
                             ("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]")):
            path = os.path.normpath(os.path.join(repo, d, name))
            text = _read(path)
            if text is not None and (marker is None or marker.encode() in text):
                return path
        if d in (".", ""):
            return None
        d = os.path.dirname(d) or "."
