"""Trusted side of the code verifier: runs stdin/stdout tests, or a ``check`` function whose
candidate lives in another process (``code_candidate``), and reports one JSON verdict line.

Started by the sandbox agent as ``python3 -I /work/.m1rl/code_checker.py`` with the payload on
stdin (mode, program, tests, limits, the run's nonce). Before anything of the program runs it
makes itself non-dumpable, reads and closes stdin, moves its real stdout to a private fd (only
the verdict goes there) and imports everything it will use: files the program rewrites in the
work dir later change nothing here.

What crosses from the candidate: plain data only (``codec``), and for an exception only its name,
re-raised here if it is one of ``REPLAYED`` (the ones a check may legitimately expect) and
otherwise turned into :class:`CandidateError`, which is not an ``Exception``: a check cannot
swallow it, and ``StopIteration`` raised by the program cannot end a ``map``/``all``/generator
loop of the check early. A returned NaN (anywhere in the value) is a candidate error too: a check
written ``if abs(got - want) > tol: raise`` would pass it.
"""

import builtins
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec  # noqa: E402
import proc  # noqa: E402

# Exceptions a check may expect the program to raise (``try: f(bad); except ValueError: ok``).
REPLAYED = {name: getattr(builtins, name) for name in (
    "ValueError", "TypeError", "KeyError", "IndexError", "LookupError", "ZeroDivisionError",
    "ArithmeticError", "OverflowError", "AttributeError", "NotImplementedError",
    "UnicodeError", "RecursionError", "RuntimeError")}
PY = ["python3", "-I", "-B"]
MAX_REPLY = 64 << 20


class CandidateError(BaseException):
    """The program failed in a way no check may accept (not an ``Exception`` on purpose)."""


def run_io(P):
    """Each input in a fresh process; returns the captured output per test (the host compares:
    expected outputs never enter the sandbox)."""
    res = []
    for i, (inp, cap) in enumerate(zip(P["inputs"], P["caps"])):
        proc.kill_others()
        path = f"/tmp/in{i}"
        with open(path, "w") as f:
            f.write(inp)
        fin = open(path, "rb")
        os.unlink(path)
        p = subprocess.Popen(PY + ["/work/prog.py"], stdin=fin, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd="/work", close_fds=True,
                             start_new_session=True)
        fin.close()
        fds = [p.stdout.fileno(), p.stderr.fileno()]
        (out, err), to = proc.pump(fds, [cap, 4096], time.monotonic() + P["test_timeout"],
                                   stop=lambda p=p: p.poll() is not None)
        timed_out = to and p.poll() is None
        rc = proc.finish(p)
        res.append({"stdout": out.decode("utf-8", "replace"), "exit": rc, "timed_out": timed_out,
                    "stderr": bytes(err[-400:]).decode("utf-8", "replace")})
        if timed_out and P["stop_after_timeout"]:
            break
    return res


class Candidate:
    """The program as a function: each call is a request over a pipe to ``code_candidate``."""

    def __init__(self, entry, deadline):
        self.deadline = deadline
        c2p_r, c2p_w = os.pipe()
        p2c_r, p2c_w = os.pipe()
        self.proc = subprocess.Popen(
            PY + ["/work/.m1rl/code_candidate.py", str(p2c_r), str(c2p_w), entry],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/work", pass_fds=(p2c_r, c2p_w), start_new_session=True)
        os.close(p2c_r)
        os.close(c2p_w)
        self.rfd, self.wf, self.buf = c2p_r, os.fdopen(p2c_w, "wb"), bytearray()

    def recv(self):
        need = None
        while True:
            if need is None and b"\n" in self.buf:
                line, _, rest = bytes(self.buf).partition(b"\n")
                need, self.buf = int(line), bytearray(rest)
                if need > MAX_REPLY:
                    raise CandidateError("reply too large")
            if need is not None and len(self.buf) >= need:
                msg, self.buf = bytes(self.buf[:need]), bytearray(self.buf[need:])
                return json.loads(msg)
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("time limit exceeded")
            if select.select([self.rfd], [], [], left)[0]:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise CandidateError(f"program exited (code {self.proc.poll()})")
                self.buf += chunk

    def __call__(self, *args, **kwargs):
        data = json.dumps({"a": codec.enc(list(args)), "k": codec.enc(dict(kwargs))}).encode()
        try:
            self.wf.write(b"%d\n" % len(data) + data)
            self.wf.flush()
        except OSError:
            raise CandidateError("program exited") from None
        rep = self.recv()
        if "ok" in rep:
            value = codec.dec(rep["ok"])
            if codec.has_nan(value):
                raise CandidateError("the program returned NaN")
            return value
        cls = REPLAYED.get(str(rep.get("exc")), CandidateError)
        raise cls(f"{rep.get('msg', '')} (raised by the program: {rep.get('exc')})")


def run_check(P):
    deadline = time.monotonic() + P["check_timeout"]
    g = {"__name__": "__check__"}
    if P.get("context"):  # the task's own trusted prompt: helpers the check calls
        exec(compile(P["context"], "context", "exec"), g)
    exec(compile(P["test_code"], "test_code", "exec"), g)
    check = g["check"]
    proc.kill_others()
    cand = Candidate(P["entry_point"], deadline)
    try:
        first = cand.recv()
        if "load_error" in first:
            return [{"passed": False, "error": "program failed to load: " + first["load_error"]}]
        g[P["entry_point"]] = cand  # as in the original harness, the entry point's name is the program
        check(cand)
        return [{"passed": True}]
    except TimeoutError:
        return [{"passed": False, "error": "timeout", "timed_out": True}]
    except BaseException as exc:
        return [{"passed": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}]
    finally:
        proc.kill_others()


def main():
    proc.non_dumpable()
    P = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    os.close(0)
    nonce = P.pop("nonce")
    out_fd = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # check code cannot print into the verdict
    sys.stdout = open(os.devnull, "w")
    with open("/work/prog.py", "w") as f:
        f.write(P["program"])
    results = run_io(P) if P["mode"] == "io" else run_check(P)
    proc.kill_others()
    os.write(out_fd, (json.dumps({"nonce": nonce, "results": results}) + "\n").encode())


main()
