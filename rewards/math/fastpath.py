"""Fast paths that settle most comparisons without sympy: string normalisation and exact
number parsing with :class:`fractions.Fraction` (integers, decimals, thousands separators,
decimal commas, ``a/b``, ``\\frac{a}{b}``, mixed numbers, percentages, scientific notation,
currency and unit text around a number).

``fast_compare(gold, pred)`` returns True / False when it can decide and None otherwise (then the
symbolic path decides). It never calls sympy and is linear in the input length.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_DIGITS = 1000  # longer numbers go to the (time-bounded) symbolic path
MAX_EXP = 400

_WRAP_RES = [
    re.compile(r"^\$\$(.*)\$\$$", re.DOTALL),
    re.compile(r"^\$(.*)\$$", re.DOTALL),
    re.compile(r"^\\\((.*)\\\)$", re.DOTALL),
    re.compile(r"^\\\[(.*)\\\]$", re.DOTALL),
]
_SUBS = [
    (re.compile(r",\\!\s*"), ","),
    (re.compile(r"\{,\}"), ""),
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:displaystyle|textstyle)(?![a-zA-Z])"), ""),
    (re.compile(r"\\[dtc]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"(?<!\\)\\(?:!|,|;|:|\s)|~|\\q?quad(?![a-zA-Z])"), " "),
    (re.compile(r"\^\s*\{?\\circ\}?|°"), ""),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\$"), ""),
    (re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|textnormal|mbox|operatorname)\s*\{\s*([^{}]*?)\s*\}"), r"\1"),
    (re.compile(r"\s+"), " "),
]


def unwrap(s: str) -> str:
    """Strip surrounding math delimiters, a surrounding ``\\boxed{}`` and trailing periods."""
    s = s.strip()
    for rx in _WRAP_RES:
        m = rx.match(s)
        if m:
            s = m.group(1).strip()
            break
    s = s.rstrip(".").rstrip()
    while s.endswith("\\") and not s.endswith("\\\\"):
        s = s[:-1].rstrip()
    if s.startswith("\\boxed{") and s.endswith("}") and balanced(s[7:-1]):
        s = s[7:-1].strip()
    return s


def clean(s: str) -> str:
    """Canonical surface form: no math delimiters, sizing macros, spacing, ``\\text{}`` wrappers."""
    s = unwrap(s)
    for rx, rep in _SUBS:
        s = rx.sub(rep, s)
    return s.strip().rstrip(".").strip()


def balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


_INT = r"\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+|\d+"
_NUM = rf"(?:{_INT})(?:[.,]\d+)?|\.\d+"
_UNIT_TEXT = r"(?:[A-Za-z][A-Za-z.]+|[A-Za-z]?[²³]|[A-Za-z]{1,3}\^\{?[23]\}?)"
_NUMBER_RE = re.compile(
    rf"^(?P<sign>[-+−]?)\s*(?:\$|€|£|¥|USD\s)?\s*"
    rf"(?:(?P<whole>\d+)\s*(?=\\frac))?"
    rf"(?:\\frac\s*\{{\s*(?P<fn>\d+)\s*\}}\s*\{{\s*(?P<fd>\d+)\s*\}}|\\frac(?P<fn1>\d)(?P<fd1>\d)"
    rf"|(?P<num>{_NUM})(?:\s*/\s*(?P<den>\d+))?"
    rf"(?:\s*(?:[eE]|\\times\s*10\s*\^|\\cdot\s*10\s*\^|\*\s*10\s*\*\*)\s*\{{?(?P<exp>[-+]?\d+)\}}?)?)"
    rf"\s*(?P<pct>%|percent(?:age)?|pct)?"
    rf"(?:\s*(?P<unit>{_UNIT_TEXT}(?:\s+{_UNIT_TEXT})*))?\s*\$?$"
)
_NOT_UNITS = {"pi", "e", "i", "x", "y", "z", "n", "k", "sqrt", "ln", "log", "sin", "cos", "tan",
              "and", "or", "to", "times", "cdot", "frac", "infty"}


def _plain_number(text: str, exp: str | None) -> Fraction | None:
    text = text.strip()
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", text) and not text.startswith("0,"):
        text = text.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(?: \d{3})+(?:\.\d+)?", text):
        text = text.replace(" ", "")
    elif "," in text:  # a decimal comma: 1000,99 / 0,111 / 2,74
        text = text.replace(",", ".")
    if len(text) > MAX_DIGITS:
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    if exp is not None:
        e = int(exp)
        if abs(e) > MAX_EXP:
            return None
        value *= Fraction(10) ** e
    return value


def to_numbers(s: str) -> tuple[Fraction, ...] | None:
    """The values a plain number-like answer may mean (a percentage means p or p/100)."""
    if len(s) > MAX_DIGITS + 100:
        return None
    m = _NUMBER_RE.match(clean(s))
    if not m:
        return None
    unit = m.group("unit")
    if unit and any(w.lower() in _NOT_UNITS for w in unit.split()):
        return None
    if m.group("fn") is not None or m.group("fn1") is not None:
        n = int(m.group("fn") or m.group("fn1"))
        d = int(m.group("fd") or m.group("fd1"))
        if d == 0:
            return None
        value = Fraction(n, d)
        if m.group("whole"):
            value += int(m.group("whole"))
    else:
        value = _plain_number(m.group("num"), m.group("exp"))
        if value is None:
            return None
        if m.group("den"):
            d = int(m.group("den"))
            if d == 0:
                return None
            value /= d
    if m.group("sign") in ("-", "−"):
        value = -value
    if m.group("pct"):
        return (value, value / 100)
    return (value,)


def _round6(x: Fraction) -> Fraction:
    return Fraction(round(x * 10**6), 10**6)


def numbers_equal(a: tuple[Fraction, ...], b: tuple[Fraction, ...]) -> bool:
    for x in a:
        for y in b:
            if x == y:
                return True
            if (x.denominator != 1 or y.denominator != 1) and _round6(x) == _round6(y):
                return True
    return False


def fast_compare(gold: str, pred: str) -> tuple[bool | None, str]:
    """(decision, reason); decision None means "ask the symbolic path"."""
    g, p = clean(gold), clean(pred)
    if not g or not balanced(g):
        return False, "gold_unparseable"
    if g == p:
        return True, "exact"
    gn = to_numbers(g)
    if gn is not None:
        pn = to_numbers(p)
        if pn is not None:
            return (True, "numeric") if numbers_equal(gn, pn) else (False, "numeric_mismatch")
    return None, ""
