"""A small, bounded LaTeX/plain-math parser and in-process comparison for common answer shapes.

``structural_compare(gold, pred)`` settles most comparisons that the number fast path
(``fastpath.py``) cannot, without the ANTLR grammar or a worker process:

* expressions: integers, decimals, ``\\frac``/``\\dfrac``/``\\tfrac``/``a/b``, ``\\sqrt`` and
  ``\\sqrt[n]``, powers, ``\\pi``, ``e``, single-letter symbols (with subscripts), implicit
  multiplication, ``+ - * / \\cdot \\times \\div``, parentheses, ``\\sin \\cos \\tan \\sec \\csc
  \\cot \\ln \\exp``;
* structures: tuples, intervals (with ``\\infty``) and their unions, ``\\{...\\}`` sets, top-level
  comma lists (unordered, as math-verify), ``pmatrix``/``bmatrix``/``array`` matrices;
* relations: ``=`` (assignments ``x = 3`` against ``3``), ``< > \\le \\ge \\neq``.

The parser builds a small tuple tree; nothing is executed and no string reaches sympy. Values are
compared exactly with :class:`fractions.Fraction` when both sides are rational, otherwise with
complex floating point (for symbols: at fixed pseudo-random points, negative ones included),
mirroring math-verify's rules. A decimal literal approximates only as far as its own digits go
(``fastpath.decimal_match``). Whatever is outside this core, too large, too deep, or numerically
borderline makes it *decline* (``(None, "")``): the caller then uses the grammar in a worker
process with its deadline.

Floats never decide equality on closeness alone. Each value carries a bound on its relative
rounding error and the smallest relative effect any non-zero part of its expression has on it
(:class:`Val`). The comparison declines when an error bound passes 1e-12 (precision lost: ``\\sin
\\pi``), when some part moves the value by less than 1e-9 (a perturbation floats cannot see:
``\\sqrt[10^{100}]{2}``, ``\\sqrt{2}+10^{-30}``), when a literal has more digits than a double
holds, when a value underflows, or when a rational taller than 10^6 meets an irrational value.
"Equal" then means within 32x the propagated error bounds (about 1e-14 relative for typical
answers), "not equal" a relative difference above 1e-9; in between it declines.

Bounds: ``MAX_CHARS`` (400) input characters, ``MAX_DEPTH`` (40) nesting, exact powers of at
most ``MAX_POW_BITS`` bits, float magnitudes below ``1e250``, at most 500 terms per ``\\sum``.
Evaluation is bounded across nesting: one comparison (``structural_compare`` or
``compare_values``, with every nested sum, every evaluation point and every pair of a set) spends
at most ``MAX_STEPS`` (20,000) node evaluations and ``MAX_SECONDS`` (0.1 s) of wall clock; past
either it declines. 20,000 steps take about 45 ms here (2-core VM), so that, capped at 0.1 s
under load, is the worst case of one in-process comparison; parsing is linear in the 400
characters.
"""

from __future__ import annotations

import cmath
import contextvars
import functools
import math
import re
import time
import zlib
from fractions import Fraction
from typing import NamedTuple

from rewards.math.fastpath import balanced, clean, decimal_match, finite_decimal, round6

__all__ = ["Refuse", "parse", "structural_compare", "MAX_CHARS", "MAX_DEPTH"]

MAX_CHARS = 400
MAX_DEPTH = 40
MAX_DIGITS = 60
MAX_POW_BITS = 4000
MAX_MAGNITUDE = 1e250
MAX_STEPS = 20_000  # node evaluations per comparison, across all nesting and all points
MAX_SECONDS = 0.1  # wall-clock guard per comparison (a backstop: MAX_STEPS binds first)
FLOAT_EXACT_LIMIT = 1e12  # beyond this, floats cannot tell n from n+1: decline
# float evaluation (see ``Val``): what a value must satisfy to be compared at all
EPS = 2.0**-52
REL_ERR_MAX = 1e-12  # bound on the relative rounding error of a value
INFLUENCE_MIN = 1e-9  # every non-zero part must move the value by at least this, relatively
MAX_FLOAT_HEIGHT = 10**15  # a literal needing more digits than a double holds is not floated
MAX_RATIONAL_VS_FLOAT = 10**6  # a rational taller than this is not float-compared to an irrational
TINY = 1e-250
EQ_SLACK = 32  # equal: the difference is within 32x the propagated error bounds
NE_TOL = 1e-9  # not equal: the values differ by more than this, relatively


class Refuse(Exception):
    """The fast parser declines this input (the worker path decides instead)."""


# --------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?|\.\d+)
    | (?P<begin>\\begin\{(?P<env>pmatrix|bmatrix|array)\}(?:\{[lcr|\s]*\})?)
    | (?P<end>\\end\{(?:pmatrix|bmatrix|array)\})
    | (?P<cmd>\\[a-zA-Z]+|\\[{}]|\\\\)
    | (?P<rel><=|>=|!=|[<>=])
    | (?P<letter>[a-zA-Z])
    | (?P<op>[-+*/^_()\[\]{},;:|&])
    )""",
    re.VERBOSE,
)
_WORD_RE = re.compile(r"(?<![\\a-zA-Z])(?<!_\{)[a-zA-Z]{3,}")
_ENV_RE = re.compile(r"\\(?:begin|end)\{[a-z]+\}")

_REL_CMDS = {"\\le": "<=", "\\leq": "<=", "\\leqslant": "<=", "\\ge": ">=", "\\geq": ">=",
             "\\geqslant": ">=", "\\ne": "!=", "\\neq": "!=", "\\lt": "<", "\\gt": ">"}
_MUL_CMDS = {"\\cdot", "\\times"}
_FUNCS = {"\\sin", "\\cos", "\\tan", "\\sec", "\\csc", "\\cot", "\\ln", "\\exp"}
_GREEK = {"\\alpha", "\\beta", "\\gamma", "\\delta", "\\theta", "\\phi", "\\varphi", "\\lambda",
          "\\mu", "\\sigma", "\\omega", "\\rho", "\\tau", "\\psi", "\\xi", "\\eta", "\\zeta", "\\nu",
          "\\kappa", "\\chi"}
_FRAC_CMDS = {"\\frac", "\\dfrac", "\\tfrac"}
_SKIP_CMDS = {"\\left", "\\right", "\\displaystyle", "\\,", "\\!"}
_FUNC_LETTERS = {"f", "g", "h", "F", "G", "P", "Q", "W"}
_MAX_MATRIX = 10
_MAX_SUM_TERMS = 500


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; raises Refuse on anything outside the supported alphabet."""
    if len(text) > MAX_CHARS:
        raise Refuse("too long")
    if _WORD_RE.search(_ENV_RE.sub(" ", text)):
        raise Refuse("words")
    out: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise Refuse(f"unsupported character {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup if m.lastgroup != "env" else "begin"
        if m.group("begin"):
            kind = "begin"
        tok = m.group(kind)
        if tok == ";":
            tok = ","
        if kind == "num" and len(tok) > MAX_DIGITS:
            raise Refuse("long number")
        if kind == "cmd":
            if tok in _SKIP_CMDS:
                continue
            if tok in _REL_CMDS:
                kind, tok = "rel", _REL_CMDS[tok]
        out.append((kind, tok))
    return out


# --------------------------------------------------------------------------- structures

class Struct:
    """A non-arithmetic value: tuple, interval, set, list, union, relation or matrix."""

    __slots__ = ("kind", "items", "left", "right", "op")

    def __init__(self, kind: str, items: list, left: str = "", right: str = "", op: str = ""):
        self.kind, self.items, self.left, self.right, self.op = kind, items, left, right, op

    def __repr__(self) -> str:  # for tests and debugging
        return f"Struct({self.kind}, {self.items!r}, {self.left}{self.right}{self.op})"


def _expr(x):
    if isinstance(x, Struct):
        raise Refuse("structure used in arithmetic")
    return x


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.toks, self.i, self.depth = tokens, 0, 0

    # -- helpers
    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self) -> tuple[str, str]:
        t = self.peek()
        self.i += 1
        return t

    def expect(self, text: str) -> None:
        if self.take()[1] != text:
            raise Refuse(f"expected {text!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refuse("too deep")

    # -- grammar
    def top(self):
        items = [self.item()]
        while self.peek()[1] == ",":
            self.take()
            kind, tok = self.peek()
            last = items[-1]
            if kind == "num" and len(tok) == 3 and tok.isdigit() and not isinstance(last, Struct) \
                    and last[0] == "num" and last[1].denominator == 1:
                raise Refuse("thousands separator or list")
            items.append(self.item())
        if self.peek()[0] != "eof":
            raise Refuse(f"trailing {self.peek()[1]!r}")
        if len(items) > 1:  # a, b \pm c: one flat list of answers
            items = [y for x in items for y in (x.items if isinstance(x, Struct) and x.kind == "list" else [x])]
        return items[0] if len(items) == 1 else Struct("list", items)

    def item(self):
        left = self.sum()
        if self.peek()[1] == "\\in" and not isinstance(left, Struct) and left[0] == "sym":
            self.take()
            return self.item()
        if self.peek()[0] == "rel":
            if isinstance(left, Struct) and left.kind == "tuple" and self.peek()[1] == "=" \
                    and all(x[0] == "sym" for x in left.items):
                self.take()  # (p, q) = (3, 2): an assignment, compared by its right side
                return self.item()
            return self.relation(left)
        if isinstance(left, Struct) and self.peek()[1] == "\\cup":
            pieces = [left]
            while self.peek()[1] == "\\cup":
                self.take()
                pieces.append(self.sum())
            for p in pieces:
                if not isinstance(p, Struct) or p.kind not in ("interval", "tuple") or len(p.items) != 2:
                    raise Refuse("union of non-intervals")
            return Struct("union", pieces)
        return left

    def relation(self, left):
        """``left op b op c ...`` (the caller saw the first relation symbol)."""
        parts, ops = [left], []
        while self.peek()[0] == "rel":
            ops.append(self.take()[1])
            parts.append(self.sum())
        if ops == ["="] and _symbolic(parts[0]) and isinstance(parts[1], Struct):
            return Struct("rel", parts, op="=")  # D = (0, 1)
        parts = [_expr(x) for x in parts]
        if len(ops) == 1:
            return Struct("rel", parts, op=ops[0])
        if all(op == "=" for op in ops):  # x = 5+5+1 = 11: first left side, last right side
            return Struct("rel", [parts[0], parts[-1]], left="" if _symbolic(parts[0]) else "chain", op="=")
        middle = parts[1][1] if parts[1][0] == "abs" else parts[1]
        if len(ops) == 2 and middle[0] == "sym" and (set(ops) <= {"<", "<="} or set(ops) <= {">", ">="}):
            return Struct("range", parts, op="".join(ops))  # a < x <= b
        raise Refuse("relation chain")

    def sum(self):
        self.enter()
        pm_at = None
        if self.peek()[1] == "\\pm":
            self.take()
            pm_at = 0
        first = self.term()
        if isinstance(first, Struct) and first.kind == "matrix":
            while self.peek()[1] in ("+", "-"):
                op = self.take()[1]
                first = _mat_add(first, self.term(), op == "-")
        if isinstance(first, Struct):
            if self.peek()[1] in ("+", "-", "\\pm") or pm_at is not None:
                raise Refuse("structure used in arithmetic")
            self.depth -= 1
            return first
        terms = [first]
        while self.peek()[1] in ("+", "-", "\\pm"):
            op = self.take()[1]
            t = _expr(self.term())
            if op == "\\pm":
                if pm_at is not None:
                    raise Refuse("several \\pm")
                pm_at = len(terms)
            terms.append(("neg", t) if op == "-" else t)
        self.depth -= 1
        if pm_at is not None:  # a \pm b: the two answers a + b and a - b
            minus = list(terms)
            minus[pm_at] = ("neg", minus[pm_at])
            return Struct("list", [_add(terms), _add(minus)])
        return _add(terms)

    def _starts_atom(self) -> bool:
        kind, tok = self.peek()
        if kind in ("num", "letter", "begin"):
            return True
        if kind == "cmd":
            return tok in _FRAC_CMDS or tok in _FUNCS or tok in _GREEK or tok in ("\\sqrt", "\\pi", "\\infty", "\\sum")
        return tok in ("(", "{") or (tok == "|" and not self.in_abs)

    def term(self):
        first = self.unary()
        if isinstance(first, Struct) and first.kind == "matrix":
            while self.peek()[1] in _MUL_CMDS or self.peek()[1] == "*" or self.peek()[0] == "begin":
                if self.peek()[0] != "begin":
                    self.take()
                first = _mat_mul(first, self.unary())
        if isinstance(first, Struct) and not (self.peek()[1] in ("*", "/", ":") or self.peek()[1] in _MUL_CMDS
                                              or self.peek()[1] == "\\div" or self._starts_atom()):
            return first
        factors = [_expr(first)]
        last_kind = self._last_kind
        while True:
            tok = self.peek()[1]
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                factors.append(_expr(self.unary()))
            elif tok in ("/", "\\div", ":"):
                self.take()
                den = _expr(self.unary())
                if self._starts_atom():
                    raise Refuse("ambiguous a/bc")
                factors.append(("div", ("num", Fraction(1), False), den))
            elif self._starts_atom():
                kind = self.peek()[0]
                if kind == "num" and last_kind in ("num", "letter"):
                    raise Refuse("number after number or letter")
                if tok in _FRAC_CMDS and len(factors) == 1 and factors[0][0] == "num":
                    raise Refuse("mixed number")
                factors.append(_expr(self.power()))
            else:
                break
            last_kind = self._last_kind
        return factors[0] if len(factors) == 1 else ("mul", factors)

    def unary(self):
        tok = self.peek()[1]
        if tok in ("-", "+"):
            self.take()
            self.enter()
            x = _expr(self.unary())
            self.depth -= 1
            return ("neg", x) if tok == "-" else x
        return self.power()

    def power(self):
        base = self.primary()
        if self.peek()[1] == "^":
            base = _expr(base)
            self.take()
            exp = self.group_or_char()
            base = ("pow", base, exp)
            if self.peek()[1] in ("^", "_"):
                raise Refuse("double script")
        if self.peek()[1] in ("_", "!", "'"):
            raise Refuse("subscript or factorial on a non-symbol")
        return base

    def group_or_char(self):
        """A braced group or a single digit / letter (as in ``x^2``, ``\\frac12``)."""
        kind, tok = self.take()
        if tok == "{":
            x = _expr(self.sum())
            self.expect("}")
            self._last_kind = "group"
            return x
        if kind == "num" and len(tok) == 1:
            self._last_kind = "num"
            return ("num", Fraction(tok), False)
        if kind == "letter":
            self._last_kind = "letter"
            return self.letter(tok, allow_sub=False)
        if kind == "cmd" and tok == "\\pi":
            self._last_kind = "letter"
            return ("const", "pi")
        raise Refuse("unsupported script or argument")

    def letter(self, tok: str, allow_sub: bool = True):
        if tok in ("i", "I", "E"):
            raise Refuse("imaginary unit or E")
        if allow_sub and self.peek()[1] == "_":
            self.take()
            return ("idx", tok, self.group_or_char())  # a_3, x_{n-1}: a function of the index
        if tok in _FUNC_LETTERS and self.peek()[1] == "(":
            return self.function_symbol(tok)
        if tok == "e":
            return ("const", "e")
        return ("sym", tok)

    def function_symbol(self, name: str):
        """``f(x)``, ``W(n, 2)``: an unknown function of symbols, compared as one symbol."""
        self.take()
        args = []
        while True:
            kind, tok = self.take()
            if kind not in ("num", "letter") or (kind == "letter" and tok in ("e", "i", "E", "I")):
                raise Refuse("function application")
            args.append(tok)
            sep = self.take()[1]
            if sep == ")":
                break
            if sep != ",":
                raise Refuse("function application")
        self._last_kind = "group"
        return ("sym", f"{name}({','.join(args)})")

    def primary(self):
        self.enter()
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self):
        kind, tok = self.take()
        self._last_kind = kind
        if kind == "num":
            return ("num", Fraction(tok), len(tok) - tok.index(".") - 1 if "." in tok else 0)
        if kind == "letter":
            return self.letter(tok)
        if kind == "begin":
            return self.matrix()
        if tok == "[" and self.peek()[0] == "begin":
            self.take()
            m = self.matrix()
            self.expect("]")
            return m
        if tok == "(" or tok == "[":
            return self.bracket(tok)
        if tok == "|" and not self.in_abs:
            self.in_abs = True
            x = _expr(self.sum())
            self.expect("|")
            self.in_abs = False
            self._last_kind = "group"
            return ("abs", x)
        if tok == "{":
            items = [self.item()]
            while self.peek()[1] == ",":
                self.take()
                items.append(self.item())
            self.expect("}")
            self._last_kind = "group"
            return items[0] if len(items) == 1 else Struct("list", items)
        if tok == "\\{":
            items = [self.item()]
            while self.peek()[1] == ",":
                self.take()
                items.append(self.item())
            self.expect("\\}")
            self._last_kind = "group"
            return Struct("set", items)
        if kind == "cmd":
            if tok == "\\pi":
                return ("const", "pi")
            if tok == "\\infty":
                return ("inf",)
            if tok in _GREEK:
                return ("sym", tok[1:])
            if tok in _FRAC_CMDS:
                k2, t2 = self.peek()
                if k2 == "num" and t2.isdigit() and len(t2) == 2:  # \frac94
                    self.take()
                    self._last_kind = "group"
                    return ("div", ("num", Fraction(t2[0]), False), ("num", Fraction(t2[1]), False))
                num = self.group_or_char()
                den = self.group_or_char()
                self._last_kind = "group"
                return ("div", num, den)
            if tok == "\\sqrt":
                index = None
                if self.peek()[1] == "[":
                    self.take()
                    index = _expr(self.sum())
                    self.expect("]")
                arg = self.group_or_char()
                self._last_kind = "group"
                return ("pow", arg, ("div", ("num", Fraction(1), False), index)) if index is not None \
                    else ("sqrt", arg)
            if tok in _FUNCS:
                return self.function(tok[1:])
            if tok == "\\sum":
                return self.summation()
        raise Refuse(f"unsupported token {tok!r}")

    def function(self, name: str):
        power = None
        if self.peek()[1] == "^":
            self.take()
            power = self.group_or_char()
        if self.peek()[1] == "(":
            self.take()
            arg = _expr(self.sum())
            self.expect(")")
        else:
            arg = self.group_or_char()
            if self._starts_atom() or self.peek()[1] == "^":
                raise Refuse("ambiguous function argument")
        self._last_kind = "group"
        node = ("fn", name, arg)
        return ("pow", node, power) if power is not None else node

    def summation(self):
        """``\\sum_{k=lo}^{hi} body``; the body is the product that follows."""
        self.expect("_")
        self.expect("{")
        kind, var = self.take()
        if kind != "letter" or var in ("e", "i", "E", "I"):
            raise Refuse("summation variable")
        self.expect("=")
        lo = _expr(self.sum())
        self.expect("}")
        self.expect("^")
        hi = self.group_or_char()
        body = _expr(self.term())
        self._last_kind = "group"
        return ("sum", var, lo, hi, body)

    def bracket(self, opener: str):
        first = self.sum()
        if opener == "(" and self.peek()[0] == "rel" and not isinstance(first, Struct):
            rel = self.relation(first)  # (35 + 70 = 105)
            self.expect(")")
            self._last_kind = "group"
            return rel
        tok = self.take()[1]
        if tok == ")" and opener == "(":
            self._last_kind = "group"
            return first
        if tok != ",":
            raise Refuse("unbalanced or bracket grouping")
        items = [first, self.sum()]
        while self.peek()[1] == ",":
            self.take()
            items.append(self.sum())
        closer = self.take()[1]
        if closer not in (")", "]"):
            raise Refuse("unclosed tuple")
        self._last_kind = "group"
        for x in items:
            if isinstance(x, Struct):
                raise Refuse("nested structure")
        if opener == "(" and closer == ")":
            return Struct("tuple", items, "(", ")")
        if len(items) != 2:
            raise Refuse("interval with more than two ends")
        return Struct("interval", items, opener, closer)

    def matrix(self):
        rows: list[list] = [[]]
        while True:
            if self.peek()[0] == "end":
                self.take()
                break
            rows[-1].append(_expr(self.sum()))
            tok = self.take()[1]
            if tok == "&":
                continue
            if tok == "\\\\":
                if self.peek()[0] == "end":
                    self.take()
                    break
                rows.append([])
                continue
            if tok.startswith("\\end"):
                break
            raise Refuse("bad matrix")
        if not rows[-1]:
            rows.pop()
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise Refuse("ragged matrix")
        self._last_kind = "group"
        return Struct("matrix", rows)

    _last_kind = ""
    in_abs = False


def _symbolic(node) -> bool:
    """Only symbols (math-verify's assignment test): x, a_3, f(x), AB, |AB|, NO/BO."""
    if isinstance(node, Struct):
        return False
    tag = node[0]
    if tag in ("sym", "idx"):
        return True
    if tag == "mul":
        return all(_symbolic(t) for t in node[1])
    if tag == "div":
        return (_symbolic(node[1]) or node[1] == ("num", 1, False)) and _symbolic(node[2])
    if tag == "abs":
        return _symbolic(node[1])
    return False


def _add(terms: list):
    return terms[0] if len(terms) == 1 else ("add", terms)


def _matrix(x) -> Struct:
    if not isinstance(x, Struct) or x.kind != "matrix":
        raise Refuse("matrix with a non-matrix")
    return x


def _mat_add(a, b, subtract: bool) -> Struct:
    a, b = _matrix(a), _matrix(b)
    if len(a.items) != len(b.items) or len(a.items[0]) != len(b.items[0]):
        raise Refuse("matrix shapes")
    return Struct("matrix", [[("add", [x, ("neg", y) if subtract else y]) for x, y in zip(ra, rb, strict=True)]
                             for ra, rb in zip(a.items, b.items, strict=True)])


def _mat_mul(a, b) -> Struct:
    a, b = _matrix(a), _matrix(b)
    n, m, k = len(a.items), len(a.items[0]), len(b.items[0])
    if len(b.items) != m or max(n, m, k) > _MAX_MATRIX:
        raise Refuse("matrix shapes")
    return Struct("matrix", [[_add([("mul", [a.items[i][t], b.items[t][j]]) for t in range(m)])
                              for j in range(k)] for i in range(n)])


_DOUBLE_BACKSLASH_RE = re.compile(r"\\\\(?=[a-zA-Z])")
_JOINER_RE = re.compile(r"\s*,?\s*\b(?:and|or)\b\s*,?\s*")
_QUAD_RE = re.compile(r"\\q?quad")
_APPROX_RE = re.compile(r"\\approx(?![a-zA-Z])")


def undouble(text: str) -> str:
    """``\\\\frac`` -> ``\\frac`` (answers escaped twice); matrices keep their ``\\\\`` rows."""
    return text if "\\begin" in text else _DOUBLE_BACKSLASH_RE.sub(r"\\", text)


def prepare(text: str) -> str:
    """Surface fixes on cleaned text: doubly escaped commands (``\\\\frac``), "and"/"or" between
    answers, and ``\\approx`` as math-verify reads it (``x \\approx 11`` is 11, ``a \\approx b`` is a)."""
    text = _QUAD_RE.sub(" ", text)
    text = _JOINER_RE.sub(",", text)
    if "\\approx" in text:
        left, _, right = _APPROX_RE.split(text, maxsplit=1)[0], None, _APPROX_RE.split(text, maxsplit=1)[-1]
        text = right if re.fullmatch(r"\s*[a-zA-Z]\s*", left) else left
    return text.strip()


def parse(text: str):
    """The tree or Struct for ``text`` (already cleaned); raises Refuse."""
    if len(text) > MAX_CHARS:
        raise Refuse("too long")
    text = prepare(text)
    if not text or not balanced(text):
        raise Refuse("empty or unbalanced")
    return _Parser(tokenize(text)).top()


# --------------------------------------------------------------------------- evaluation

class _Budget:
    """What one comparison may still spend: node evaluations and wall-clock time."""

    __slots__ = ("steps", "deadline")

    def __init__(self):
        self.steps, self.deadline = MAX_STEPS, time.perf_counter() + MAX_SECONDS


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("fastparse_budget", default=None)


def _tick() -> None:
    """Charge one node evaluation; Refuse when the comparison's budget is spent."""
    budget = _BUDGET.get()
    if budget is None:
        raise Refuse("evaluation outside a bounded comparison")
    budget.steps -= 1
    if budget.steps < 0:
        raise Refuse("evaluation budget spent")
    if budget.steps % 128 == 0 and time.perf_counter() > budget.deadline:
        raise Refuse("evaluation deadline passed")


def bounded(fn):
    """Run ``fn`` under one evaluation budget (nested calls share the outermost one)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if _BUDGET.get() is not None:
            return fn(*args, **kwargs)
        token = _BUDGET.set(_Budget())
        try:
            return fn(*args, **kwargs)
        finally:
            _BUDGET.reset(token)

    return run


def _int_root(n: int, k: int) -> int | None:
    if n < 0:
        if k % 2 == 0:
            return None
        r = _int_root(-n, k)
        return -r if r is not None else None
    if n.bit_length() > 2000:
        return None
    r = round(n ** (1.0 / k)) if n < 2**1000 else math.isqrt(n) if k == 2 else None
    if r is None:
        return None
    for c in (r - 1, r, r + 1):
        if c >= 0 and c**k == n:
            return c
    return None


def _exact_pow(b: Fraction, e: Fraction) -> Fraction | None:
    if e.denominator == 1:
        n = e.numerator
        if b == 0:
            if n < 0:
                raise Refuse("zero to a negative power")
            return Fraction(1) if n == 0 else Fraction(0)
        if abs(b) == 1:
            return b**n
        bits = max(b.numerator.bit_length(), b.denominator.bit_length())
        if bits * abs(n) > MAX_POW_BITS:
            raise Refuse("power too large")
        return b**n
    q = e.denominator
    if q > 12 or b < 0:
        return None
    rn, rd = _int_root(b.numerator, q), _int_root(b.denominator, q)
    if rn is None or rd is None:
        return None
    return _exact_pow(Fraction(rn, rd), Fraction(e.numerator))


def exact(node) -> Fraction | None:
    """The rational value of a constant tree, or None (irrational or symbolic)."""
    _tick()
    tag = node[0]
    if tag == "num":
        return node[1]
    if tag in ("sym", "const", "fn", "idx", "sum"):
        return None
    if tag == "abs":
        v = exact(node[1])
        return None if v is None else abs(v)
    if tag == "inf":
        raise Refuse("infinity in arithmetic")
    if tag == "neg":
        v = exact(node[1])
        return None if v is None else -v
    if tag == "add":
        vals = [exact(t) for t in node[1]]
        return None if any(v is None for v in vals) else sum(vals, Fraction(0))
    if tag == "mul":
        vals = [exact(t) for t in node[1]]
        if any(v is None for v in vals):
            return None
        out = Fraction(1)
        for v in vals:
            out *= v
        return out
    if tag == "div":
        a, b = exact(node[1]), exact(node[2])
        if b == 0:
            raise Refuse("division by zero")
        return None if a is None or b is None else a / b
    if tag == "pow":
        b, e = exact(node[1]), exact(node[2])
        if e is None:
            return None
        if b is None:
            return Fraction(1) if e == 0 else None
        return _exact_pow(b, e)
    if tag == "sqrt":
        v = exact(node[1])
        return None if v is None else _exact_pow(v, Fraction(1, 2))
    raise Refuse(f"unknown node {tag}")


_FN = {"sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "ln": cmath.log, "exp": cmath.exp,
       "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z),
       "cot": lambda z: 1 / cmath.tan(z)}
# f'(z) / f(z): the relative condition number of f at z is |z f'(z) / f(z)|
_DLOG = {"sin": lambda z: cmath.cos(z) / cmath.sin(z), "cos": lambda z: -cmath.tan(z),
         "tan": lambda z: 1 / (cmath.sin(z) * cmath.cos(z)), "exp": lambda z: 1,
         "ln": lambda z: 1 / (z * cmath.log(z)), "sec": cmath.tan,
         "csc": lambda z: -cmath.cos(z) / cmath.sin(z), "cot": lambda z: -1 / (cmath.sin(z) * cmath.cos(z))}
_AT_ZERO = {"sin": 0, "tan": 0, "cos": 1, "sec": 1, "exp": 1}  # f(0) where it is exact


class Val(NamedTuple):
    """A float value ``z`` with a bound ``err`` on its relative error (0: exact) and ``infl``: the
    smallest relative effect that any non-zero part of its expression has on it. A value 0 is
    always exact (an inexact zero is refused where it would arise)."""

    z: complex
    err: float = 0.0
    infl: float = 1.0


_ZERO, _ONE = Val(0j), Val(1 + 0j)


def approx(node, env: dict[str, complex]) -> Val:
    """The value at ``env``; ZeroDivisionError / ValueError mark a bad point; Refuse on size,
    on lost precision, and on a part too small to change the value (a perturbation)."""
    _tick()
    handler = _APPROX.get(node[0])
    if handler is None:
        raise Refuse(f"unknown node {node[0]}")
    v = handler(node, env)
    if not abs(v.z) < MAX_MAGNITUDE:  # also nan
        raise Refuse("magnitude")
    if v.z != 0 and abs(v.z) < TINY:
        raise Refuse("underflow")
    if v.err > REL_ERR_MAX:
        raise Refuse("precision lost")
    if v.infl < INFLUENCE_MIN:
        raise Refuse("a part too small to change the value")
    return v


def _num(node, env) -> Val:
    q = node[1]
    try:
        f = float(q)
    except OverflowError as exc:
        raise Refuse("overflow") from exc
    if Fraction(f) == q:
        return Val(complex(f))
    if max(abs(q.numerator), q.denominator) > MAX_FLOAT_HEIGHT:
        raise Refuse("more digits than a float holds")
    return Val(complex(f), EPS)


def _idx(node, env) -> Val:
    """a_k: a fixed pseudo-random function of (name, k); k must be known exactly."""
    k = approx(node[2], env)
    if k.err * abs(k.z) > 1e-10:
        raise Refuse("inexact index")
    key = f"{node[1]}|{round(k.z.real, 9):.9g}|{round(k.z.imag, 9):.9g}".encode()
    return Val(complex(0.5 + (zlib.crc32(key) % 100003) / 50001.5))


def _sum_of(vals: list[Val]) -> Val:
    z = complex(math.fsum(v.z.real for v in vals), math.fsum(v.z.imag for v in vals))
    scale = sum(abs(v.z) for v in vals)
    if scale == 0:
        return _ZERO
    abs_err = sum(abs(v.z) * v.err for v in vals) + EPS * abs(z)
    if z == 0:
        if abs_err:
            raise Refuse("cancellation")
        return _ZERO  # exact terms that cancel exactly (fsum is exactly rounded)
    infl = min(abs(v.z) / abs(z) * v.infl for v in vals if v.z != 0)
    return Val(z, abs_err / abs(z), infl)


def _mul(node, env) -> Val:
    vals = [approx(t, env) for t in node[1]]
    if any(v.z == 0 for v in vals):
        return _ZERO
    z = 1 + 0j
    for v in vals:
        z *= v.z
    if z == 0:
        raise Refuse("underflow")
    return Val(z, sum(v.err for v in vals) + len(vals) * EPS, min(v.infl for v in vals))


def _div(node, env) -> Val:
    a, b = approx(node[1], env), approx(node[2], env)
    if b.z == 0:
        raise ZeroDivisionError("division by zero")
    if a.z == 0:
        return _ZERO
    z = a.z / b.z
    if z == 0:
        raise Refuse("underflow")
    return Val(z, a.err + b.err + EPS, min(a.infl, b.infl))


def _sqrt(node, env) -> Val:
    v = approx(node[1], env)
    return _ZERO if v.z == 0 else Val(cmath.sqrt(v.z), v.err / 2 + EPS, v.infl / 2)


def _pow(node, env) -> Val:
    b, e = approx(node[1], env), approx(node[2], env)
    if abs(e.z) > 1e4:
        raise Refuse("exponent too large")
    if e.z == 0 or (b.z == 1 and b.err == 0):
        return _ONE
    if b.z == 0:
        if e.z.imag == 0 and e.z.real > 0:
            return _ZERO
        raise ZeroDivisionError("zero to a non-positive power")
    integral = e.err == 0 and e.z.imag == 0 and e.z.real == int(e.z.real)
    try:
        z = b.z ** int(e.z.real) if integral else b.z ** e.z
    except OverflowError as exc:
        raise Refuse("overflow") from exc
    if z == 0:
        raise Refuse("underflow")
    lam_b, lam_e = abs(e.z), abs(e.z * cmath.log(b.z))  # relative effect of base and exponent
    infl = lam_b * b.infl if integral else min(lam_b * b.infl, lam_e * e.infl)
    return Val(z, lam_b * (b.err + EPS) + lam_e * e.err + 4 * EPS, infl)


def _fn(node, env) -> Val:
    name, arg = node[1], approx(node[2], env)
    if abs(arg.z) > 1e6:
        raise Refuse("huge function argument")
    if arg.z == 0:
        if name not in _AT_ZERO:
            raise ZeroDivisionError(f"{name}(0)")
        return Val(complex(_AT_ZERO[name]))
    if name == "ln" and arg.z == 1 and arg.err == 0:
        return _ZERO
    try:
        z = _FN[name](arg.z)
        kappa = abs(arg.z * _DLOG[name](arg.z))
    except OverflowError as exc:
        raise Refuse("overflow") from exc
    if z == 0:
        raise Refuse("underflow")
    return Val(z, kappa * arg.err + 8 * EPS, kappa * arg.infl)


def _bound(node, env) -> int:
    x = exact(node)
    if x is not None:
        if x.denominator != 1:
            raise ValueError("non-integer summation bound")
        return x.numerator
    v = approx(node, env)
    if v.z.imag != 0 or v.z.real != round(v.z.real) or v.err * abs(v.z) > 1e-6:
        raise ValueError("non-integer summation bound")
    return int(round(v.z.real))


def _approx_sum(node, env) -> Val:
    _, var, lo, hi, body = node
    a, b = _bound(lo, env), _bound(hi, env)
    if b - a > _MAX_SUM_TERMS:
        raise Refuse("long sum")
    inner = dict(env)
    terms = []
    for k in range(a, b + 1):
        inner[var] = complex(k)
        terms.append(approx(body, inner))
    return _sum_of(terms) if terms else _ZERO


def _inf(node, env) -> Val:
    raise Refuse("infinity in arithmetic")


_APPROX = {
    "num": _num, "idx": _idx, "sum": _approx_sum, "inf": _inf, "mul": _mul, "div": _div,
    "sqrt": _sqrt, "pow": _pow, "fn": _fn,
    "sym": lambda node, env: Val(env[node[1]]),
    "const": lambda node, env: Val(complex(math.pi if node[1] == "pi" else math.e), EPS),
    "neg": lambda node, env: (lambda v: Val(-v.z, v.err, v.infl))(approx(node[1], env)),
    "abs": lambda node, env: (lambda v: Val(complex(abs(v.z)), v.err + EPS, v.infl))(approx(node[1], env)),
    "add": lambda node, env: _sum_of([approx(t, env) for t in node[1]]),
}


def _has_sum(node) -> bool:
    if isinstance(node, tuple):
        return node[0] == "sum" or any(_has_sum(c) for c in node[1:] if isinstance(c, (tuple, list)))
    if isinstance(node, list):
        return any(_has_sum(c) for c in node)
    return False


def symbols(node, acc: set[str] | None = None) -> set[str]:
    acc = set() if acc is None else acc
    tag = node[0]
    if tag == "sym":
        acc.add(node[1])
    elif tag in ("add", "mul"):
        for t in node[1]:
            symbols(t, acc)
    elif tag in ("neg", "sqrt", "abs"):
        symbols(node[1], acc)
    elif tag == "idx":
        symbols(node[2], acc)
    elif tag == "sum":
        inner: set[str] = set()
        symbols(node[4], inner)
        inner.discard(node[1])
        acc |= inner
        symbols(node[2], acc)
        symbols(node[3], acc)
    elif tag in ("div", "pow"):
        symbols(node[1], acc)
        symbols(node[2], acc)
    elif tag == "fn":
        symbols(node[2], acc)
    return acc


# Fixed pseudo-random points: mixed signs so that sqrt(x^2) != x, |x| != x are caught.
_POINTS = [0.7316, -1.3127, 2.1993, -0.4481, 1.6712, -2.5377, 0.3859, 1.1113]
_INT_POINTS = [7, 11, 5, 13, 9, 17, 6, 19]  # where a summation bound needs integers


def _envs(a, b, count: int = 4):
    syms = sorted(symbols(a) | symbols(b))
    ints = _has_sum(a) or _has_sum(b)
    for k in range(count):
        if ints:
            yield {s: complex(_INT_POINTS[(k + 3 * j) % len(_INT_POINTS)]) for j, s in enumerate(syms)}
        else:
            yield {s: complex(_POINTS[(k + 3 * j) % len(_POINTS)] + 0.1 * j) for j, s in enumerate(syms)}


def _close(a: Val, b: Val) -> bool | None:
    """Equal within the propagated error bounds (True), clearly apart (False), or undecided."""
    if a.z == 0 or b.z == 0:
        return a.z == b.z  # zeros are exact and a non-zero value is known to 1e-12
    m = max(abs(a.z), abs(b.z))
    d = abs(a.z - b.z)
    if d <= EQ_SLACK * (a.err * abs(a.z) + b.err * abs(b.z)) + 4 * EPS * m:
        return True
    if d > NE_TOL * m:
        return False
    return None


def _decimals(node) -> int | None:
    """The number of decimals of a decimal literal (``-0.25``: 2), else None."""
    while node[0] == "neg":
        node = node[1]
    return node[2] if node[0] == "num" and node[2] else None


def _is_inf(node) -> int:
    sign = 1
    while node[0] == "neg":
        sign, node = -sign, node[1]
    return sign if node[0] == "inf" else 0


def expr_equal(a, b) -> bool | None:
    """math-verify's expression equality on trees (``a`` the gold): True, False, or None."""
    ia, ib = _is_inf(a), _is_inf(b)
    if ia or ib:
        return ia == ib
    if not (symbols(a) | symbols(b)):
        return _constants_equal(a, b)
    verdicts = []
    for env in _envs(a, b):
        try:
            va, vb = approx(a, env), approx(b, env)
        except (ZeroDivisionError, ValueError):
            continue
        if max(abs(va.z), abs(vb.z)) > FLOAT_EXACT_LIMIT:
            return None
        verdicts.append(_close(va, vb))
    if len(verdicts) < 2:
        return None
    return _all(verdicts)


def _constants_equal(a, b) -> bool | None:
    xa, xb = exact(a), exact(b)
    da, db = _decimals(a), _decimals(b)
    if da is not None or db is not None:
        return _decimal_equal(a, xa, da, b, xb, db)
    if xa is not None and xb is not None:
        return xa == xb
    x = xa if xa is not None else xb
    if x is not None and max(abs(x.numerator), x.denominator) > MAX_RATIONAL_VS_FLOAT:
        return None  # a tall rational can sit as close as it likes to an irrational value
    va, vb = approx(a, {}), approx(b, {})
    if max(abs(va.z), abs(vb.z)) > FLOAT_EXACT_LIMIT:
        return None
    return _close(va, vb)


def _decimal_equal(a, xa, da, b, xb, db) -> bool | None:
    """A decimal literal on either side (``a`` the gold): the predicted decimal's own digits
    decide (``fastpath.decimal_match``); a decimal gold reads a non-decimal prediction."""
    if db is not None:
        dec, k, other, other_exact = xb, db, a, xa
    elif xb is not None and finite_decimal(xb):
        return xa == xb  # a terminating rational is a decimal in disguise: exact only
    else:
        dec, k, other, other_exact = xa, da, b, xb
    if other_exact is not None:
        return decimal_match(dec, k, other_exact)
    v = approx(other, {})
    if abs(v.z.imag) > v.err * abs(v.z):
        return False  # a complex value is no decimal
    return _decimal_match_float(dec, k, v.z.real, v.err * abs(v.z))


def _decimal_match_float(dec: Fraction, k: int, value: float, abs_err: float) -> bool | None:
    """``decimal_match`` against a float known to ``abs_err``; None where that error could flip it."""
    if k <= 6:
        x = Fraction(value) * 10**6
        frac = x - math.floor(x)
        if abs(frac - Fraction(1, 2)) <= Fraction(abs_err) * 10**6 * 4 + Fraction(1, 10**9):
            return None  # on a rounding boundary
        return round6(dec) == Fraction(math.floor(x + Fraction(1, 2)), 10**6)
    half = Fraction(1, 2 * 10**k)
    err = Fraction(abs_err) * 4
    if err * 100 > half:
        return None  # floats do not carry that many digits of this value
    d = abs(Fraction(value) - dec)
    if d <= half - err:
        return True
    return False if d > half + err else None


# --------------------------------------------------------------------------- structures

def _all(results: list[bool | None]) -> bool | None:
    if False in results:
        return False
    if None in results:
        return None
    return True


def _dedupe(items: list) -> list | None:
    out: list = []
    for x in items:
        same = [compare_values(y, x) for y in out]
        if None in same:
            return None
        if True not in same:
            out.append(x)
    return out


def _unordered(gs: list, ps: list) -> bool | None:
    """Finite sets (``\\{...\\}`` and comma lists) as sympy's FiniteSet: unordered, deduplicated."""
    if len(gs) * len(ps) > 400:
        return None
    if len(gs) != len(ps):
        gs, ps = _dedupe(gs), _dedupe(ps)
        if gs is None or ps is None:
            return None
        if len(gs) != len(ps):
            return False
    used = [False] * len(ps)
    undecided = False
    for g in gs:
        found = False
        for j, p in enumerate(ps):
            if used[j]:
                continue
            r = compare_values(g, p)
            if r is True:
                used[j] = found = True
                break
            if r is None:
                undecided = True
        if not found:
            return None if undecided else False
    return True


def _relation(g: Struct, p: Struct) -> bool | None:
    gd = ("add", [g.items[0], ("neg", g.items[1])])
    pd = ("add", [p.items[0], ("neg", p.items[1])])
    if g.op in ("=", "!=") or p.op in ("=", "!="):
        if g.op != p.op:
            return None
        if _assignment(g) and _assignment(p):
            if g.items[0] != p.items[0]:
                return None
            return compare_values(g.items[1], p.items[1])
        if isinstance(g.items[1], Struct) or isinstance(p.items[1], Struct):
            return None
        return True if _proportional(gd, pd) is not None else None
    # inequalities: compare "greater side minus smaller side" and strictness
    gstrict, pstrict = g.op in ("<", ">"), p.op in ("<", ">")
    gpos = gd if g.op in (">", ">=") else ("neg", gd)
    ppos = pd if p.op in (">", ">=") else ("neg", pd)
    ratio = _proportional(gpos, ppos)
    if ratio is None:
        return None
    if gstrict != pstrict:
        return False
    return ratio > 0


def _proportional(a, b) -> float | None:
    """The constant c with a == c*b (c != 0) when there is one, else None."""
    ratios = []
    for env in _envs(a, b):
        try:
            va, vb = approx(a, env), approx(b, env)
        except (ZeroDivisionError, ValueError):
            continue
        if va.z == 0 or vb.z == 0 or max(abs(va.z), abs(vb.z)) > FLOAT_EXACT_LIMIT:
            return None
        ratios.append(Val(va.z / vb.z, va.err + vb.err + EPS))
    if len(ratios) < 3 or any(abs(r.z.imag) > 1e-9 for r in ratios):
        return None
    if all(_close(r, ratios[0]) is True for r in ratios):
        return ratios[0].z.real
    return None


def _as_interval(r: Struct) -> Struct:
    a, x, b = r.items
    closed = ["=" in op for op in (r.op[:2] if r.op[:2] in ("<=", ">=") else r.op[:1],
                                   r.op[2:] if r.op[:2] in ("<=", ">=") else r.op[1:])]
    if r.op.startswith(">"):
        a, b, closed = b, a, closed[::-1]
    return Struct("interval", [a, b], "[" if closed[0] else "(", "]" if closed[1] else ")"), x


def _range(g: Struct, p: Struct) -> bool | None:
    """``a < x <= b`` against an interval or a tuple (math-verify's ``as_set``), or another range."""
    if g.kind == "range" and p.kind == "range":
        (gi, gx), (pi, px) = _as_interval(g), _as_interval(p)
        return compare_values(gi, pi) if gx == px else None
    if g.kind != "range":
        return False  # math-verify reads a relation as a set only when the gold is the relation
    interval, x = _as_interval(g)
    if x[0] == "abs":  # a <= |z| <= b with 0 < a: [-b, -a] U [a, b]
        a = exact(interval.items[0])
        if a is None or a <= 0:
            return None
        mirror = Struct("interval", [("neg", interval.items[1]), ("neg", interval.items[0])],
                        "[" if interval.right == "]" else "(", "]" if interval.left == "[" else ")")
        interval = Struct("union", [mirror, interval])
    if p.kind not in ("interval", "tuple", "union"):
        return None
    return compare_values(interval, p)


def _pieces(x: Struct) -> list | None:
    """Sorted, disjoint, non-touching (lo, hi, piece) with numeric ends, or None."""
    out = []
    for piece in (x.items if x.kind == "union" else [x]):
        if len(piece.items) != 2:
            return None
        ends = []
        for e in piece.items:
            inf = _is_inf(e)
            if inf:
                ends.append(inf * math.inf)
            elif symbols(e):
                return None
            else:
                v = approx(e, {}).z
                if abs(v.imag) > 1e-12 * abs(v):
                    return None
                ends.append(v.real)
        if not ends[0] < ends[1]:
            return None
        out.append((ends[0], ends[1], piece))
    out.sort(key=lambda t: t[0])
    for (_, hi, a), (lo, _, b) in zip(out, out[1:]):
        if hi > lo - 1e-9 and not (abs(hi - lo) <= 1e-9 and a.right == ")" and b.left == "("):
            return None
    return out


def _unions(g: Struct, p: Struct) -> bool | None:
    """Unions of intervals: equal as sets when their canonical pieces match one by one."""
    gp, pp = _pieces(g), _pieces(p)
    if gp is None or pp is None:
        return None
    if len(gp) != len(pp):
        return False
    r = _all([compare_values(a[2], b[2]) for a, b in zip(gp, pp, strict=True)])
    return r


def _assignment(r: Struct) -> bool:
    return r.op == "=" and _symbolic(r.items[0])


@bounded
def compare_values(g, p) -> bool | None:
    """Equality of two parsed answers under math-verify's rules; None when undecided."""
    gs, ps = isinstance(g, Struct), isinstance(p, Struct)
    # equations: x = 3 against 3 (either side), 2x + z = 1 against 1 is not equal
    if ps and p.kind == "rel" and not (gs and g.kind == "rel"):
        if p.op != "=":
            return None
        p = p.items[1]  # math-verify follows the gold: an equation answer counts by its last right side
        ps = isinstance(p, Struct)
    if gs and g.kind == "rel" and not (ps and p.kind == "rel"):
        if g.op == "=" and _assignment(g):
            g, gs = g.items[1], False
        elif ps:
            return None
        else:
            return False if g.op == "=" else None
    if not gs and not ps:
        return expr_equal(g, p)
    if gs and ps and g.kind == "rel" and p.kind == "rel":
        return None if "chain" in (g.left, p.left) else _relation(g, p)
    if gs and ps and g.kind in ("list", "set") and p.kind in ("list", "set"):
        return _unordered(g.items, p.items)
    if not (gs and ps):
        return None  # one answer against several, or a number against a structure
    if g.kind == "range" or p.kind == "range":
        return _range(g, p)
    if g.kind == "tuple" and p.kind == "tuple":
        if len(g.items) != len(p.items):
            return False
        return _all([expr_equal(a, b) for a, b in zip(g.items, p.items, strict=True)])
    if {g.kind, p.kind} <= {"tuple", "interval"} and len(g.items) == len(p.items) == 2:
        if (g.left, g.right) != (p.left, p.right):
            return False
        return _all([expr_equal(a, b) for a, b in zip(g.items, p.items, strict=True)])
    if g.kind == "tuple" and p.kind == "list" and len(g.items) == len(p.items) == 2:
        # (1, 3) is an open interval to math-verify; against {1, 3} it is compared in order
        lo, hi = exact(g.items[0]), exact(g.items[1])
        if lo is not None and hi is not None and lo < hi:
            r = _all([compare_values(a, b) for a, b in zip(g.items, p.items, strict=True)])
            return True if r else None
        if lo is not None and hi is not None and lo > hi:
            return False  # an empty open interval
        return None
    if "union" in (g.kind, p.kind) and {g.kind, p.kind} <= {"union", "interval", "tuple"}:
        return _unions(g, p)
    if g.kind == "matrix" and p.kind == "matrix":
        if len(g.items) != len(p.items) or len(g.items[0]) != len(p.items[0]):
            return False
        return _all([expr_equal(a, b) for ra, rb in zip(g.items, p.items, strict=True)
                     for a, b in zip(ra, rb, strict=True)])
    return None


@bounded
def structural_compare(gold: str, pred: str) -> tuple[bool | None, str]:
    """(decision, reason) for answers the fast parser understands; (None, "") otherwise."""
    try:
        g = parse(clean(undouble(gold)))
        p = parse(clean(undouble(pred)))
        decision = compare_values(g, p)
    except (Refuse, RecursionError, ZeroDivisionError, ValueError, OverflowError, KeyError):
        return None, ""
    if decision is None:
        return None, ""
    return decision, "fast_symbolic" if decision else "fast_not_equivalent"
