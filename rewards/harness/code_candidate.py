"""Untrusted side of the code verifier's assert mode: runs the program, answers calls.

Started by ``code_checker`` as ``python3 -I code_candidate.py RFD WFD ENTRY``. It loads
``/work/prog.py`` (the response's program), then answers each call request read from fd RFD with
plain data on fd WFD (``codec``): ``{"ok": value}`` or ``{"exc": name, "msg": text}``. Nothing it
sends is trusted beyond being plain data: the checker decides which exception names it re-raises.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec  # noqa: E402

rf = os.fdopen(int(sys.argv[1]), "rb")
wf = os.fdopen(int(sys.argv[2]), "wb")
ENTRY = sys.argv[3]


def plain(x):
    """numpy scalars/arrays become plain data here (in the untrusted process: harmless)."""
    if (type(x).__module__ or "").startswith("numpy") and hasattr(x, "tolist"):
        return x.tolist()
    return x


def send(obj):
    data = json.dumps(obj).encode()
    wf.write(b"%d\n" % len(data) + data)
    wf.flush()


def main():
    ns = {"__name__": "__candidate__"}
    try:
        with open("/work/prog.py") as f:
            src = f.read()
        exec(compile(src, "prog.py", "exec"), ns)
        fn = ns[ENTRY]
    except BaseException as exc:
        send({"load_error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from None
    send({"ready": True})
    while True:
        line = rf.readline()
        if not line:
            return
        req = json.loads(rf.read(int(line)))
        try:
            out = fn(*codec.dec(req["a"]), **codec.dec(req["k"]))
            send({"ok": codec.enc(plain(out))})
        except BaseException as exc:
            try:
                send({"exc": type(exc).__name__, "msg": str(exc)[:500]})
            except BaseException:
                send({"exc": "Exception", "msg": "unprintable exception"})


main()
