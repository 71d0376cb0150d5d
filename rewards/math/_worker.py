"""Symbolic comparison, run inside a killable worker process (see ``pool.py``).

The parse is ``latex2sympy2_extended``'s ANTLR grammar (through math-verify's normalisation and
comparison rules), which builds sympy objects node by node.

Hardening. Three places in those libraries turn a token's text into a number with
``sympy.Number(str)``, which goes through ``sympify`` and so through ``eval``; math-verify also has a
plain-expression path through ``parse_expr_cached``. The rule here is that model text never
reaches ``sympify``/``parse_expr``, so :func:`harden` replaces the number converters with a
digits-only one, turns that path into an error (we never enable it), and, as a last line, makes
sympy's one ``eval`` site (``sympy.parsing.sympy_parser.eval_expr``) raise while model text is
parsed (only then: sympy itself sympifies constant strings, e.g. unit names, when comparing).
The patches touch library internals, so they are written for the exact versions in
:data:`PINNED` (the pins in ``pyproject.toml``): :func:`missing_targets` lists patch targets that
no longer exist and :func:`harden` refuses to run (:class:`HardeningError`) rather than compare
with a patch silently dropped; a worker that cannot harden answers every call with an error.

Deadlines. math-verify's own timeouts turn a timeout into a silent ``False``, so they are off; the
worker arms its own interval timer (SIGALRM) for each call and answers ``(None, "soft_timeout")``
when it fires. The pool's SIGKILL at the hard deadline is the backstop for C code that never
returns to the interpreter.

Replies: ``(True | False, reason)`` is a judgement; ``(None, reason)`` is none: ``"soft_timeout"``,
``"memory"`` (the answer hit the memory limit) or ``"error: ..."`` (the backend failed).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import resource
import signal
from functools import lru_cache

PINNED = {"math-verify": "0.9.0", "latex2sympy2_extended": "1.11.0"}
# (module, attribute path) of every patch harden() installs
HARDENING_TARGETS = (
    ("latex2sympy2_extended.latex2sympy2", "convert_number"),
    ("latex2sympy2_extended.latex2sympy2", "_Latex2Sympy.parse_number"),
    ("math_verify.parser", "parse_expr_cached"),
    ("math_verify.parser", "Number"),
    ("sympy.parsing.sympy_parser", "eval_expr"),
)

_HARDENED = False
_EVAL_EXPR = None  # sympy's eval_expr, swapped out while model text is parsed
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]*\.[0-9]+|[0-9]+\.[0-9]*")


class HardeningError(RuntimeError):
    """A hardening target is missing: the installed library is not the one the patches are for."""


class _SoftTimeout(BaseException):
    """Raised by the worker's own timer; a BaseException so that ``except Exception`` in the
    libraries does not turn it into a verdict."""


def safe_number(text: str):
    """Digits (and one dot) to a sympy number without sympify; anything else raises."""
    import sympy

    t = text.replace(",", "").replace(" ", "")
    if _DIGITS.fullmatch(t):
        return sympy.Integer(int(t))  # int() refuses > 4300 digits: a cheap bound
    if _DECIMAL.fullmatch(t) and len(t) < 400:
        return sympy.Float(t, max(15, len(t)))
    raise ValueError(f"not a plain number: {text[:40]!r}")


def _lookup(module: str, path: str):
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def missing_targets() -> list[str]:
    """``module.attribute`` of each hardening target that does not exist in the installed
    libraries (ImportError when a library itself does not load)."""
    missing = []
    for module, path in HARDENING_TARGETS:
        try:
            _lookup(module, path)
        except AttributeError:
            missing.append(f"{module}.{path}")
    return missing


def _convert_number(number: str):
    if "," in number and number.startswith("0"):
        number = number.replace(",", ".")
    integer = number.translate(str.maketrans("", "", ", ")).lstrip("0") or "0"
    return safe_number(integer)


def _parse_number(self, text):
    return safe_number(text)


def _refuse(*args, **kwargs):
    raise ValueError("string parsing (parse_expr / eval) is disabled in the math worker")


def harden() -> None:
    """Swap the string-to-sympy entry points of the parsing libraries for safe ones; raise
    :class:`HardeningError` (patching nothing) if any target is missing."""
    global _HARDENED
    if _HARDENED:
        return
    missing = missing_targets()
    if missing:
        raise HardeningError(f"hardening targets missing: {', '.join(missing)}; the installed "
                             f"libraries are not the pinned versions {PINNED}")
    import latex2sympy2_extended.latex2sympy2 as l2s
    import math_verify.parser as mvp
    import sympy.parsing.sympy_parser as spp

    l2s.convert_number = _convert_number
    l2s._Latex2Sympy.parse_number = _parse_number
    mvp.parse_expr_cached = _refuse
    mvp.Number = safe_number  # only called on digit strings in extract_expr
    global _EVAL_EXPR
    _EVAL_EXPR = spp.eval_expr
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notices
    _HARDENED = True


def limit_memory(max_bytes: int) -> None:
    if max_bytes > 0:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
        except (ValueError, OSError):
            pass


class _NoEval:
    """Within the block, sympy's ``eval_expr`` raises (the worker is single-threaded)."""

    def __enter__(self):
        import sympy.parsing.sympy_parser as spp

        spp.eval_expr = _refuse

    def __exit__(self, *exc):
        import sympy.parsing.sympy_parser as spp

        if _EVAL_EXPR is not None:
            spp.eval_expr = _EVAL_EXPR


def _parse(text: str):
    with _NoEval():
        return _parse_cached(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str):
    from math_verify import LatexExtractionConfig, parse

    cfg = [LatexExtractionConfig(boxed_match_priority=0)]
    wrapped = text if ("$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text) else f"${text}$"
    out = parse(wrapped, cfg, parsing_timeout=None)
    if not out and wrapped is not text:
        out = parse(f"\\boxed{{{text}}}", cfg, parsing_timeout=None)
    return tuple(out)


def compare(gold: str, pred: str) -> tuple[bool, str]:
    """(equivalent, reason) with no deadline of its own. Reasons: "symbolic", "not_equivalent",
    "exactly_different" (math-verify said equal, sympy proves the values apart: see
    :func:`provably_apart`), "gold_unparseable", "pred_unparseable"."""
    harden()
    from math_verify import verify

    g = _parse(gold)
    if not g:
        return False, "gold_unparseable"
    p = _parse(pred)
    if not p:
        return False, "pred_unparseable"
    if not verify(list(g), list(p), float_rounding=6, timeout_seconds=None):
        return False, "not_equivalent"
    if provably_apart(g[0], p[0], _decimals(pred) or _decimals(gold)):
        return False, "exactly_different"
    return True, "symbolic"


_DECIMAL_LITERAL_RE = re.compile(r"[0-9]*\.([0-9]+)")
_AUDIT_POINTS = ((7, 3), (-11, 5), (13, 7), (17, 11), (-19, 13), (23, 17))


def _decimals(text: str) -> int:
    """The most digits after a decimal point in ``text`` (0: no decimal literal)."""
    return max((len(m.group(1)) for m in _DECIMAL_LITERAL_RE.finditer(text)), default=0)


def provably_apart(gold, pred, decimals: int) -> bool:
    """Whether sympy shows two values math-verify called equal to differ. math-verify's numeric
    check chops differences below its 15 digits, so ``\\sqrt{2} + 10^{-30}`` and a 17-digit
    fraction pass as ``\\sqrt{2}``. Here a bare decimal on either side is an approximation as far
    as its ``decimals`` go (up to 6: math-verify's 6-decimal rounding stands; more: within half a
    unit of the last decimal); otherwise the difference (symbols set to fixed rationals) is
    evaluated to 50 significant digits by sympy's adaptive evalf, and a result that carries
    significant digits means the values differ. Tuples, intervals and matrices are checked element by element; sets,
    relations, percentages and values with different symbols keep math-verify's verdict."""
    import sympy

    if isinstance(gold, sympy.Tuple) and isinstance(pred, sympy.Tuple) and len(gold) == len(pred):
        return any(provably_apart(a, b, decimals) for a, b in zip(gold, pred))
    if isinstance(gold, sympy.Interval) and isinstance(pred, sympy.Interval):
        return provably_apart(gold.start, pred.start, decimals) or provably_apart(gold.end, pred.end, decimals)
    if isinstance(gold, sympy.MatrixBase) and isinstance(pred, sympy.MatrixBase) and gold.shape == pred.shape:
        return any(provably_apart(a, b, decimals) for a, b in zip(gold, pred))
    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
        return False
    if gold.free_symbols != pred.free_symbols:
        return False  # equal by math-verify's symbol or text rules, not by value
    diff = gold - pred
    if gold.is_Float or pred.is_Float:
        if decimals <= 6:
            return False
        value = diff.evalf(decimals + 20)
        return bool(value.is_number and abs(value) > sympy.Rational(1, 2 * 10**decimals))
    free = sorted(diff.free_symbols, key=str)
    if len(free) > len(_AUDIT_POINTS):
        return False
    diff = diff.subs({s: sympy.Rational(*pt) for s, pt in zip(free, _AUDIT_POINTS)})
    parts = diff.evalf(50).as_real_imag()
    if not all(isinstance(x, sympy.Float) or x == 0 for x in parts):
        return False  # not a plain number (percent forms, unevaluated pieces)
    # a cancelled difference comes back with no significant bits (sympy's _prec of 1)
    return any(isinstance(x, sympy.Float) and x._mpf_[1] != 0 and x._prec >= 20 for x in parts)


def _on_alarm(signum, frame):
    raise _SoftTimeout()


def answer(gold: str, pred: str, soft_timeout: float) -> tuple[bool | None, str]:
    """One call as the worker answers it: a judgement, or ``(None, reason)`` (see the module doc)."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, soft_timeout))
    try:
        return compare(gold, pred)
    except _SoftTimeout:
        return None, "soft_timeout"
    except MemoryError:
        return None, "memory"
    except (ImportError, HardeningError) as exc:
        return None, f"error: backend unavailable: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a parser bug: no judgement, and it is reported
        return None, f"error: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    """Fill the parser caches; a backend that cannot load is reported per call, not here."""
    try:
        harden()
    except (ImportError, HardeningError):
        return
    for g, p in WARM_PAIRS:
        try:
            compare(g, p)
        except Exception:
            pass


def serve(conn, max_bytes: int) -> None:  # pragma: no cover - runs in the child process
    """Worker loop: receive (gold, pred, soft_timeout), answer (verdict, reason)."""
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
            _parse_cached.cache_clear()
            conn.send(("cleared", os.getpid()))
            continue
        conn.send(answer(*msg))


def backend_problems() -> list[str]:
    """What is wrong with the installed parsing libraries (missing, or not the pinned version);
    empty when all is well. Reads package metadata only (imports nothing heavy)."""
    import importlib.metadata as md

    problems = []
    for dist, pinned in PINNED.items():
        try:
            have = md.version(dist)
        except md.PackageNotFoundError:
            problems.append(f"{dist} is not installed (pip install '{dist}=={pinned}')")
            continue
        if have != pinned:
            problems.append(f"{dist} {have} is installed but {pinned} is pinned: the worker's "
                            f"hardening patches its internals and is checked for {pinned} only")
    return problems
