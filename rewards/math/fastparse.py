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
mirroring math-verify's rules (6-decimal rounding when one side is a bare decimal). Whatever is
outside this core, too large, too deep, or numerically borderline makes it *decline*
(``(None, "")``): the caller then uses the grammar in a worker process with its deadline.

Bounds: ``MAX_CHARS`` input characters, ``MAX_DEPTH`` nesting, exact powers of at most
``MAX_POW_BITS`` bits, float magnitudes below ``1e250``. Cost is linear in the input and tiny.
"""

from __future__ import annotations

import cmath
import math
import re
from fractions import Fraction

from rewards.math.fastpath import balanced, clean

__all__ = ["Refuse", "parse", "structural_compare", "MAX_CHARS", "MAX_DEPTH"]

MAX_CHARS = 400
MAX_DEPTH = 40
MAX_DIGITS = 60
MAX_POW_BITS = 4000
MAX_MAGNITUDE = 1e250
FLOAT_EXACT_LIMIT = 1e12  # beyond this, floats cannot tell n from n+1: decline
EQ_TOL, NE_TOL = 1e-10, 1e-7


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
    | (?P<op>[-+*/^_()\[\]{},;&])
    )""",
    re.VERBOSE,
)
_WORD_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
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
_FUNC_LETTERS = {"f", "g", "h"}


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
            parts, ops = [_expr(left)], []
            while self.peek()[0] == "rel":
                ops.append(self.take()[1])
                parts.append(_expr(self.sum()))
            if len(ops) == 1:
                return Struct("rel", parts, op=ops[0])
            if all(op == "=" for op in ops) and parts[0][0] == "sym":
                return Struct("rel", [parts[0], parts[-1]], op="=")  # x = 5+5+1 = 11
            if len(ops) == 2 and parts[1][0] == "sym" and (set(ops) <= {"<", "<="} or set(ops) <= {">", ">="}):
                return Struct("range", parts, op="".join(ops))  # a < x <= b
            raise Refuse("relation chain")
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

    def sum(self):
        self.enter()
        first = self.term()
        if isinstance(first, Struct) and self.peek()[1] not in ("+", "-"):
            self.depth -= 1
            return first
        terms = [_expr(first)]
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            t = _expr(self.term())
            terms.append(("neg", t) if op == "-" else t)
        self.depth -= 1
        return terms[0] if len(terms) == 1 else ("add", terms)

    def _starts_atom(self) -> bool:
        kind, tok = self.peek()
        if kind in ("num", "letter", "begin"):
            return True
        if kind == "cmd":
            return tok in _FRAC_CMDS or tok in _FUNCS or tok in _GREEK or tok in ("\\sqrt", "\\pi", "\\infty")
        return tok in ("(", "{")

    def term(self):
        first = self.unary()
        if isinstance(first, Struct) and not (self.peek()[1] in ("*", "/") or self.peek()[1] in _MUL_CMDS
                                              or self.peek()[1] == "\\div" or self._starts_atom()):
            return first
        factors = [_expr(first)]
        last_kind = self._last_kind
        while True:
            tok = self.peek()[1]
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                factors.append(_expr(self.unary()))
            elif tok in ("/", "\\div"):
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
        if tok in ("i", "I") or tok.isupper():
            raise Refuse("imaginary unit or upper-case symbol")
        name = tok
        if allow_sub and self.peek()[1] == "_":
            self.take()
            kind, sub = self.take()
            if sub == "{":
                parts = []
                while self.peek()[1] != "}":
                    k, t = self.take()
                    if k not in ("num", "letter"):
                        raise Refuse("complex subscript")
                    parts.append(t)
                self.take()
                sub = "".join(parts)
            elif kind not in ("num", "letter") or (kind == "num" and len(sub) > 1):
                raise Refuse("complex subscript")
            return ("sym", f"{name}_{sub}")
        if name == "e":
            return ("const", "e")
        return ("sym", name)

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
            return ("num", Fraction(tok), "." in tok)
        if kind == "letter":
            if tok in _FUNC_LETTERS and self.peek()[1] == "(":
                raise Refuse("function application")
            return self.letter(tok)
        if kind == "begin":
            return self.matrix()
        if tok == "(" or tok == "[":
            return self.bracket(tok)
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

    def bracket(self, opener: str):
        first = self.sum()
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


def parse(text: str):
    """The tree or Struct for ``text`` (already cleaned); raises Refuse."""
    if not text or not balanced(text):
        raise Refuse("empty or unbalanced")
    return _Parser(tokenize(text)).top()


# --------------------------------------------------------------------------- evaluation

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
    tag = node[0]
    if tag == "num":
        return node[1]
    if tag in ("sym", "const", "fn"):
        return None
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


def approx(node, env: dict[str, complex]) -> complex:
    """Complex value at ``env``; ZeroDivisionError / ValueError mark a bad point; Refuse on size."""
    tag = node[0]
    if tag == "num":
        return complex(node[1])
    if tag == "sym":
        return env[node[1]]
    if tag == "const":
        return complex(math.pi if node[1] == "pi" else math.e)
    if tag == "inf":
        raise Refuse("infinity in arithmetic")
    if tag == "neg":
        return -approx(node[1], env)
    if tag == "add":
        out = sum((approx(t, env) for t in node[1]), 0j)
    elif tag == "mul":
        out = 1 + 0j
        for t in node[1]:
            out *= approx(t, env)
    elif tag == "div":
        out = approx(node[1], env) / approx(node[2], env)
    elif tag == "sqrt":
        out = cmath.sqrt(approx(node[1], env))
    elif tag == "pow":
        b, e = approx(node[1], env), approx(node[2], env)
        if abs(e) > 1e4:
            raise Refuse("exponent too large")
        try:
            if e.imag == 0 and e.real == int(e.real):
                out = b ** int(e.real)
            else:
                out = b**e
        except OverflowError as exc:
            raise Refuse("overflow") from exc
    elif tag == "fn":
        arg = approx(node[2], env)
        if abs(arg) > 1e6:
            raise Refuse("huge function argument")
        try:
            out = _FN[node[1]](arg)
        except OverflowError as exc:
            raise Refuse("overflow") from exc
    else:
        raise Refuse(f"unknown node {tag}")
    if not (abs(out) < MAX_MAGNITUDE):  # also catches nan
        raise Refuse("magnitude")
    return out


def symbols(node, acc: set[str] | None = None) -> set[str]:
    acc = set() if acc is None else acc
    tag = node[0]
    if tag == "sym":
        acc.add(node[1])
    elif tag in ("add", "mul"):
        for t in node[1]:
            symbols(t, acc)
    elif tag in ("neg", "sqrt"):
        symbols(node[1], acc)
    elif tag in ("div", "pow"):
        symbols(node[1], acc)
        symbols(node[2], acc)
    elif tag == "fn":
        symbols(node[2], acc)
    return acc


# Fixed pseudo-random points: mixed signs so that sqrt(x^2) != x, |x| != x are caught.
_POINTS = [0.7316, -1.3127, 2.1993, -0.4481, 1.6712, -2.5377, 0.3859, 1.1113]


def _close(a: complex, b: complex) -> bool | None:
    scale = max(1.0, abs(a), abs(b))
    d = abs(a - b)
    if d <= EQ_TOL * scale:
        return True
    if d > NE_TOL * scale:
        return False
    return None


def _is_float_atom(node) -> bool:
    while node[0] == "neg":
        node = node[1]
    return node[0] == "num" and bool(node[2])


def _is_inf(node) -> int:
    sign = 1
    while node[0] == "neg":
        sign, node = -sign, node[1]
    return sign if node[0] == "inf" else 0


def expr_equal(a, b) -> bool | None:
    """math-verify's expression equality on trees: True, False, or None (undecided)."""
    ia, ib = _is_inf(a), _is_inf(b)
    if ia or ib:
        return ia == ib
    syms = sorted(symbols(a) | symbols(b))
    if not syms:
        xa, xb = exact(a), exact(b)
        if _is_float_atom(a) or _is_float_atom(b):
            va = xa if xa is not None else _real(approx(a, {}))
            vb = xb if xb is not None else _real(approx(b, {}))
            if va is None or vb is None:
                return None
            return _round6(va) == _round6(vb) if _round6(va) is not None and _round6(vb) is not None else None
        if xa is not None and xb is not None:
            return xa == xb
        va, vb = approx(a, {}), approx(b, {})
        if max(abs(va), abs(vb)) > FLOAT_EXACT_LIMIT:
            return None
        return _close(va, vb)
    verdicts = []
    for k in range(4):
        env = {s: complex(_POINTS[(k + 3 * j) % len(_POINTS)] + 0.1 * j) for j, s in enumerate(syms)}
        try:
            va, vb = approx(a, env), approx(b, env)
        except (ZeroDivisionError, ValueError):
            continue
        if max(abs(va), abs(vb)) > FLOAT_EXACT_LIMIT:
            return None
        verdicts.append(_close(va, vb))
    if len(verdicts) < 2:
        return None
    if False in verdicts:
        return False
    if None in verdicts:
        return None
    return True


def _real(z: complex) -> float | None:
    return z.real if abs(z.imag) <= 1e-12 * max(1.0, abs(z.real)) else None


def _round6(v) -> Fraction | None:
    """v rounded to 6 decimals; None on a rounding boundary (where float error could flip it)."""
    x = Fraction(v) * 10**6
    frac = x - math.floor(x)
    if not isinstance(v, Fraction) and abs(frac - Fraction(1, 2)) < Fraction(1, 10**6):
        return None
    return Fraction(math.floor(x + Fraction(1, 2)), 10**6)


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
            return expr_equal(g.items[1], p.items[1])
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
    syms = sorted(symbols(a) | symbols(b))
    ratios = []
    for k in range(4):
        env = {s: complex(_POINTS[(k + 3 * j) % len(_POINTS)] + 0.1 * j) for j, s in enumerate(syms)}
        try:
            va, vb = approx(a, env), approx(b, env)
        except (ZeroDivisionError, ValueError):
            continue
        if abs(vb) < 1e-9 or abs(va) < 1e-9 or max(abs(va), abs(vb)) > FLOAT_EXACT_LIMIT:
            return None
        ratios.append(va / vb)
    if len(ratios) < 3 or any(abs(r.imag) > 1e-9 for r in ratios):
        return None
    if all(_close(r, ratios[0]) is True for r in ratios):
        return ratios[0].real
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
    r, other = (g, p) if g.kind == "range" else (p, g)
    if other.kind not in ("interval", "tuple") or len(other.items) != 2:
        return None
    interval, _ = _as_interval(r)
    return compare_values(interval, other) if r is g else compare_values(other, interval)


def _assignment(r: Struct) -> bool:
    return r.op == "=" and r.items[0][0] == "sym"


def compare_values(g, p) -> bool | None:
    """Equality of two parsed answers under math-verify's rules; None when undecided."""
    gs, ps = isinstance(g, Struct), isinstance(p, Struct)
    # equations: x = 3 against 3 (either side), 2x + z = 1 against 1 is not equal
    if ps and p.kind == "rel" and not (gs and g.kind == "rel"):
        if p.op == "=" and _assignment(p):
            p, ps = p.items[1], False
        else:
            return None
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
        return _relation(g, p)
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
    if g.kind == "union" and p.kind == "union" and len(g.items) == len(p.items):
        r = _all([compare_values(a, b) for a, b in zip(g.items, p.items, strict=True)])
        return True if r else None
    if g.kind == "matrix" and p.kind == "matrix":
        if len(g.items) != len(p.items) or len(g.items[0]) != len(p.items[0]):
            return False
        return _all([expr_equal(a, b) for ra, rb in zip(g.items, p.items, strict=True)
                     for a, b in zip(ra, rb, strict=True)])
    return None


def structural_compare(gold: str, pred: str) -> tuple[bool | None, str]:
    """(decision, reason) for answers the fast parser understands; (None, "") otherwise."""
    try:
        g = parse(clean(gold))
        p = parse(clean(pred))
        decision = compare_values(g, p)
    except (Refuse, RecursionError, ZeroDivisionError, ValueError, OverflowError, KeyError):
        return None, ""
    if decision is None:
        return None, ""
    return decision, "fast_symbolic" if decision else "fast_not_equivalent"
