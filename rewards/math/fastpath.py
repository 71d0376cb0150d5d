"""Fast paths that settle most comparisons without sympy: string normalisation and exact
number parsing with :class:`fractions.Fraction` (integers, decimals, thousands separators,
decimal commas, ``a/b``, ``\\frac{a}{b}``, mixed numbers, percentages, scientific notation,
currency and unit text around a number).

``fast_compare(gold, pred)`` returns True / False when it can decide and None otherwise (then the
symbolic path decides). It never calls sympy and is linear in the input length.

Numbers are compared exactly. A decimal is an approximation only as far as its own digits go
(:func:`decimal_match`): with at most 6 decimals it matches what rounds to the same 6 decimals
(math-verify's rule, so ``0.333333`` is ``1/3``); with more it must be the other value correctly
rounded at its last digit, so ``1.0000000001`` is not ``1`` and ``0.99999999999999999999`` is not
``1``. Integers and fractions are exact: ``\frac{100000000000000000001}{10^{20}}`` is not ``1``;
a terminating fraction against a decimal gold is a decimal in disguise and must be equal.
Digits are ASCII ``0-9`` only: an answer with other Unicode number characters (full-width ``１``,
Arabic-Indic ``١``, mathematical ``𝟏``, ``¹``, ``①``, ``Ⅰ``) is not equal to a gold written without
them (``"non_ascii_digits"``).
"""

from __future__ import annotations

import math
import re
import unicodedata
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
    # linear: a lazy group between two \s* was cubic on "\text{" and 4,000 spaces (18 s)
    (re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|textnormal|mbox|operatorname)\s*\{([^{}]*)\}"),
     lambda m: m.group(1).strip()),
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
    rf"(?a)^(?P<sign>[-+−]?)\s*(?:\$|€|£|¥|USD\s)?\s*"
    rf"(?:(?P<whole>\d+)\s*(?=\\frac))?"
    rf"(?:\\frac\s*\{{\s*(?P<fn>\d+)\s*\}}\s*\{{\s*(?P<fd>\d+)\s*\}}|\\frac(?P<fn1>\d)(?P<fd1>\d)"
    rf"|(?P<num>{_NUM})(?:\s*/\s*(?P<den>\d+))?"
    rf"(?:\s*(?:[eE]|\\times\s*10\s*\^|\\cdot\s*10\s*\^|\*\s*10\s*\*\*)\s*\{{?(?P<exp>[-+]?\d+)\}}?)?)"
    rf"\s*(?P<pct>%|percent(?:age)?|pct)?"
    rf"(?:\s*(?P<unit>{_UNIT_TEXT}(?:\s+{_UNIT_TEXT})*))?\s*\$?$"
)
_NOT_UNITS = {"pi", "e", "i", "x", "y", "z", "n", "k", "sqrt", "ln", "log", "sin", "cos", "tan",
              "and", "or", "to", "times", "cdot", "frac", "infty"}


_THOUSANDS_COMMA_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_THOUSANDS_SPACE_RE = re.compile(r"[0-9]{1,3}(?: [0-9]{3})+(?:\.[0-9]+)?")


def _plain_number(text: str, exp: str | None) -> tuple[Fraction, int | None] | None:
    """(value, decimals): decimals is None for an integer, else the digits after the point
    (shifted by a power-of-ten exponent)."""
    text = text.strip()
    if _THOUSANDS_COMMA_RE.fullmatch(text) and not text.startswith("0,"):
        text = text.replace(",", "")
    elif _THOUSANDS_SPACE_RE.fullmatch(text):
        text = text.replace(" ", "")
    elif "," in text:  # a decimal comma: 1000,99 / 0,111 / 2,74
        text = text.replace(",", ".")
    if len(text) > MAX_DIGITS:
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    decimals = len(text) - text.index(".") - 1 if "." in text else None
    if exp is not None:
        e = int(exp)
        if abs(e) > MAX_EXP:
            return None
        value *= Fraction(10) ** e
        if decimals is not None or e < 0:
            decimals = (decimals or 0) - e
    return value, decimals


def to_numbers(s: str) -> tuple[Fraction, ...] | None:
    """The values a plain number-like answer may mean (a percentage means p or p/100)."""
    readings = read_number(s)
    return None if readings is None else tuple(v for v, _ in readings)


def read_number(s: str) -> tuple[tuple[Fraction, int | None], ...] | None:
    """Like :func:`to_numbers`, each value with its decimals (None: an exact integer or fraction)."""
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
        value, decimals = Fraction(n, d), None
        if m.group("whole"):
            value += int(m.group("whole"))
    else:
        read = _plain_number(m.group("num"), m.group("exp"))
        if read is None:
            return None
        value, decimals = read
        if m.group("den"):
            d = int(m.group("den"))
            if d == 0:
                return None
            value, decimals = value / d, None
    if m.group("sign") in ("-", "−"):
        value = -value
    if m.group("pct"):
        return ((value, decimals), (value / 100, None if decimals is None else decimals + 2))
    return ((value, decimals),)


def foreign_digits(s: str) -> bool:
    """Whether ``s`` has a non-ASCII number character: digits of other scripts and styles
    (``１ ١ १ 𝟏``), superscripts and subscripts, circled, parenthesized and Roman numerals,
    vulgar fractions; a unit's ``²``/``³`` right after a letter (``m²``) excepted."""
    if s.isascii():
        return False
    for i, c in enumerate(s):
        if not c.isascii() and unicodedata.category(c)[0] == "N":
            if c in "²³" and i and s[i - 1].isalpha():
                continue
            return True
    return False


def round6(x: Fraction) -> Fraction:
    """``x`` rounded to 6 decimals (half up)."""
    return Fraction(math.floor(x * 10**6 + Fraction(1, 2)), 10**6)


def finite_decimal(x: Fraction) -> bool:
    """Whether ``x`` has a terminating decimal expansion (denominator 2^a 5^b)."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal_match(dec: Fraction, k: int, other: Fraction) -> bool:
    """Whether a decimal written with ``k`` decimals stands for ``other``: equal; or, with at
    most 6 decimals, both round to the same 6 decimals; or, with more, ``other`` rounded at the
    decimal's last digit is the decimal (within half a unit of that digit)."""
    if dec == other:
        return True
    if k <= 6:
        return round6(dec) == round6(other)
    return 2 * abs(dec - other) * 10**k <= 1


def numbers_equal(gold: tuple, pred: tuple) -> bool:
    """Readings of :func:`read_number`: the prediction's decimals decide when it has them; a
    decimal gold reads a non-terminating fraction; otherwise equality is exact."""
    for x, kx in gold:
        for y, ky in pred:
            if x == y:
                return True
            if ky is not None:
                if decimal_match(y, ky, x):
                    return True
            elif kx is not None and not finite_decimal(y) and decimal_match(x, kx, y):
                return True
    return False


def fast_compare(gold: str, pred: str) -> tuple[bool | None, str]:
    """(decision, reason); decision None means "ask the symbolic path"."""
    g, p = clean(gold), clean(pred)
    if not g or not balanced(g):
        return False, "gold_unparseable"
    if g == p:
        return True, "exact"
    if not balanced(p):
        return False, "pred_unbalanced"  # unclosed braces are no answer (a \\frac{ flood ending in 1)
    if foreign_digits(p) and not foreign_digits(g):
        return False, "non_ascii_digits"
    gn = read_number(g)
    if gn is not None:
        pn = read_number(p)
        if pn is not None:
            return (True, "numeric") if numbers_equal(gn, pn) else (False, "numeric_mismatch")
    return None, ""
