"""Trusted supervisor of one SWE verification, inside the sandbox.

``python3 -I -B /work/.m1rl/swe_supervisor.py`` with the payload on stdin (patch, node ids,
canaries, test arguments, env, setup command, timeout, nonce). Steps:

1. non-dumpable; read and close stdin; the real stdout goes to a private fd (verdict only); the
   sources of the runner and the reporter are read into memory now, before any untrusted code;
2. extract the repository, snapshot its protected files (``swe_tree``);
3. apply the patch (``git apply``, else ``patch -p1``), repair the tree (restore, remove what may
   not be added);
4. run the task's setup command if any, kill every process it left, repair again;
5. append the canary tests, seal the test tree, write the runner, reporter and an empty config
   into a fresh directory, and start the test process with a pipe opened for the reporter;
6. read the pipe and the output until the process exits or the deadline passes, kill every
   other process, drain the pipe, compare the seal;
7. write one verdict line with the nonce: raw reports, exit status, seal changes, what the
   repair did. The host judges (``rewards/swe.py``).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proc  # noqa: E402
import swe_tree  # noqa: E402

REPO = "/work/repo"
HERE = os.path.dirname(os.path.abspath(__file__))


def tail(b, n=3000):
    return bytes(b[-n:]).decode("utf-8", "replace")


def apply_patch(patch):
    path = "/tmp/m1rl.patch"
    with open(path, "w") as f:
        f.write(patch)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")
    r = subprocess.run(["git", "apply", "--whitespace=nowarn", "-v", path], cwd=REPO,
                       capture_output=True, env=env)
    if r.returncode == 0:
        return "git apply", b""
    r2 = subprocess.run(["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch",
                         "-r", "-", "-i", path], cwd=REPO, capture_output=True)
    if r2.returncode == 0:
        return "patch -p1", b""
    return None, r.stderr + b"\n" + r2.stdout + r2.stderr


def run_tests(P, sources, deadline):
    """Start the test process; returns (reports bytes, exit status, log, timed_out)."""
    tdir = "/work/.m1rl-run-" + os.urandom(8).hex()
    os.makedirs(tdir)
    for name, src in sources.items():
        with open(os.path.join(tdir, name), "wb") as f:
            f.write(src)
    test_files = sorted({i.split("::")[0] for i in P["ids"]})
    config = swe_tree.pytest_config(REPO, test_files) or os.path.join(tdir, "pytest.ini")
    args = (P["test_args"] + ["-p", "no:cacheprovider", "-q", "--rootdir", REPO,
                              "--confcutdir", REPO, "-c", config] + P["ids"] + P["canary_ids"])
    env = dict(os.environ)
    env.update(P["env"])
    rfd, wfd = os.pipe()
    p = subprocess.Popen(["python3", "-I", "-B", os.path.join(tdir, "swe_runner.py"), str(wfd),
                          REPO, json.dumps(args), P["env"].get("PYTHONPATH", "")],
                         cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, pass_fds=(wfd,), start_new_session=True)
    os.close(wfd)
    (reports, log), timed_out = proc.pump([rfd, p.stdout.fileno()], [4 << 20, 1 << 20], deadline,
                                          stop=lambda: p.poll() is not None)
    timed_out = timed_out and p.poll() is None
    rc = proc.finish(p)
    reports += proc.drain(rfd, 4 << 20)
    return bytes(reports), rc, log, timed_out


def main():
    proc.non_dumpable()
    P = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    os.close(0)
    nonce = P.pop("nonce")
    out_fd = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sources = {}
    for name in ("swe_runner.py", "swe_report.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            sources[name] = f.read()
    sources["pytest.ini"] = b"[pytest]\n"

    def done(**kw):
        proc.kill_others()
        os.write(out_fd, (json.dumps(dict(kw, nonce=nonce)) + "\n").encode())
        raise SystemExit(0)

    deadline = time.monotonic() + P["timeout"]
    swe_tree.extract("/work/repo.tar.gz", REPO)
    os.unlink("/work/repo.tar.gz")
    test_files = sorted({i.split("::")[0] for i in P["ids"]})
    snap = swe_tree.snapshot(REPO, test_files)
    missing = [f for f in test_files if f not in snap["content"]]
    if missing:
        done(status="bad_task", log=f"test files not in the repository: {missing}")
    how, log = apply_patch(P["patch"])
    if how is None:
        done(status="apply_failed", log=tail(log))
    restored, removed = swe_tree.repair(REPO, snap, test_files)
    if P.get("setup"):
        s = subprocess.Popen(P["setup"], shell=True, cwd=REPO, env=dict(os.environ, **P["env"]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        (out,), to = proc.pump([s.stdout.fileno()], [1 << 20], deadline,
                               stop=lambda: s.poll() is not None)
        rc = proc.finish(s)
        if to or rc != 0:
            done(status="setup_failed", log=tail(out), applied_with=how)
        again, removed2 = swe_tree.repair(REPO, snap, test_files)
        restored, removed = sorted(set(restored) | set(again)), dict(removed, **removed2)
    swe_tree.add_canaries(REPO, P["canaries"])
    sealed = swe_tree.seal(REPO, test_files)
    reports, rc, log, timed_out = run_tests(P, sources, deadline)
    changed = swe_tree.seal_changes(sealed, swe_tree.seal(REPO, test_files))
    done(status="ran", reports=reports.decode("utf-8", "replace"), exit_code=rc,
         timed_out=timed_out, log=tail(log), applied_with=how, restored=restored,
         removed=removed, tree_changed=changed)


main()
