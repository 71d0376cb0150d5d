"""Symbolic comparison, run inside a killable worker process (see ``pool.py``).

The parse is ``latex2sympy2_extended``'s ANTLR grammar (through math-verify's normalisation and
comparison rules), which builds sympy objects node by node. Two places in those libraries turn a
token's text into a number with ``sympy.Number(str)``, which goes through ``sympify`` and so
through ``eval``; the token is digits only, but the rule here is that model text never reaches
``sympify``/``parse_expr``, so :func:`harden` replaces them with a digits-only converter and
turns math-verify's plain-expression ``parse_expr`` path into an error (we never enable it).
"""

from __future__ import annotations

import os
import re
import resource
from functools import lru_cache

_HARDENED = False
_DIGITS = re.compile(r"\d+")
_DECIMAL = re.compile(r"\d*\.\d+|\d+\.\d*")


def safe_number(text: str):
    """Digits (and one dot) to a sympy number without sympify; anything else raises."""
    import sympy

    t = text.replace(",", "").replace(" ", "")
    if _DIGITS.fullmatch(t):
        return sympy.Integer(int(t))  # int() refuses > 4300 digits: a cheap bound
    if _DECIMAL.fullmatch(t) and len(t) < 400:
        return sympy.Float(t, max(15, len(t)))
    raise ValueError(f"not a plain number: {text[:40]!r}")


def harden() -> None:
    """Swap the string-to-sympy entry points of the parsing libraries for safe ones."""
    global _HARDENED
    if _HARDENED:
        return
    import latex2sympy2_extended.latex2sympy2 as l2s
    import math_verify.parser as mvp

    def convert_number(number: str):
        if "," in number and number.startswith("0"):
            number = number.replace(",", ".")
        integer = number.translate(str.maketrans("", "", ", ")).lstrip("0") or "0"
        return safe_number(integer)

    def parse_number(self, text):
        return safe_number(text)

    def refuse(expr: str):
        raise ValueError("plain-expression parsing (parse_expr) is disabled")

    l2s.convert_number = convert_number
    l2s._Latex2Sympy.parse_number = parse_number
    mvp.parse_expr_cached = refuse
    mvp.parse_expr = refuse
    mvp.Number = safe_number  # only called on digit strings in extract_expr
    _HARDENED = True


def limit_memory(max_bytes: int) -> None:
    if max_bytes > 0:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
        except (ValueError, OSError):
            pass


@lru_cache(maxsize=4096)
def _parse(text: str, soft_timeout: int):
    from math_verify import LatexExtractionConfig, parse

    cfg = [LatexExtractionConfig(boxed_match_priority=0)]
    wrapped = text if ("$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text) else f"${text}$"
    out = parse(wrapped, cfg, parsing_timeout=soft_timeout)
    if not out and wrapped is not text:
        out = parse(f"\\boxed{{{text}}}", cfg, parsing_timeout=soft_timeout)
    return tuple(out)


def compare(gold: str, pred: str, soft_timeout: int = 2) -> tuple[bool, str]:
    """(equivalent, reason). Reasons: "symbolic", "not_equivalent", "gold_unparseable",
    "pred_unparseable", "soft_timeout"."""
    harden()
    from math_verify import verify

    g = _parse(gold, soft_timeout)
    if not g:
        return False, "gold_unparseable"
    p = _parse(pred, soft_timeout)
    if not p:
        return False, "pred_unparseable"
    ok = verify(list(g), list(p), float_rounding=6, timeout_seconds=soft_timeout)
    return bool(ok), "symbolic" if ok else "not_equivalent"


# Typical answer shapes. Parsing them once fills the ANTLR parser's DFA cache and sympy's caches;
# done in the forkserver before it forks workers, every worker starts warm.
WARM_PAIRS = [
    ("\\frac{1}{2}", "0.5"), ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"), ("x^2+2x+1", "(x+1)^2"),
    ("(1, \\frac{9}{2})", "(1,4.5)"), ("[0,1)", "[0, 1)"), ("(-\\infty, -3] \\cup [2, \\infty)", "(2, 3)"),
    ("\\{1, 2, 3\\}", "3, 2, 1"), ("x = 3", "3"), ("x \\geq 5", "5 \\leq x"), ("x < 1", "-x > -1"),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}"),
    ("2\\pi", "6.283185"), ("\\sin^2 x + \\cos^2 x", "1"), ("\\tan^2(y)+1", "\\sec^2(y)"),
    ("e^{i\\pi}", "-1"), ("\\log_2 8", "3"), ("10\\%", "0.1"), ("\\text{odd}", "\\text{even}"),
    ("a_3 = 2, a_{37} = 19", "a_{37} = 19, a_3 = 2"), ("3 \\pm 2\\sqrt{2}", "3+2\\sqrt{2}, 3-2\\sqrt{2}"),
    ("90^\\circ", "\\frac{\\pi}{2}"), ("\\dfrac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"), ("5!", "120"),
    ("\\binom{5}{2}", "10"), ("|x-2|", "2-x"), ("f(x) = 2x", "2x"), ("y=-\\frac{1}{2}x+\\frac{3}{4}", "2x+4y-3=0"),
]


def warm() -> None:
    harden()
    for g, p in WARM_PAIRS:
        try:
            compare(g, p)
        except Exception:
            pass


def serve(conn, max_bytes: int) -> None:  # pragma: no cover - runs in the child process
    """Worker loop: receive (gold, pred, soft_timeout), answer (ok, reason)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    limit_memory(max_bytes)
    warm()  # a no-op cost when the forkserver already warmed up (caches are inherited)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if msg == "clear":
            _parse.cache_clear()
            conn.send(("cleared", os.getpid()))
            continue
        gold, pred, soft = msg
        try:
            conn.send(compare(gold, pred, soft))
        except MemoryError:
            conn.send((False, "memory"))
        except Exception as exc:  # a parser bug is a recorded "no", not a dead worker
            conn.send((False, f"error: {type(exc).__name__}"))
