"""The fast parser's grammar: tokens to a small tuple tree (expressions) or a :class:`Struct`
(tuples, intervals, sets, lists, unions, relations, matrices). Nothing is evaluated here beyond
building matrix sums and products from their entries."""

from __future__ import annotations

import re
from fractions import Fraction

from rewards.math.fastparse.tokens import (
    FRAC_CMDS,
    FUNC_LETTERS,
    FUNCS,
    GREEK,
    MAX_CHARS,
    MAX_DEPTH,
    MUL_CMDS,
    Refuse,
    tokenize,
)
from rewards.math.fastpath import balanced

_MAX_MATRIX = 10


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
        if ops == ["="] and only_symbols(parts[0]) and isinstance(parts[1], Struct):
            return Struct("rel", parts, op="=")  # D = (0, 1)
        parts = [_expr(x) for x in parts]
        if len(ops) == 1:
            return Struct("rel", parts, op=ops[0])
        if all(op == "=" for op in ops):  # x = 5+5+1 = 11: first left side, last right side
            return Struct("rel", [parts[0], parts[-1]], left="" if only_symbols(parts[0]) else "chain", op="=")
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
            return tok in FRAC_CMDS or tok in FUNCS or tok in GREEK or tok in ("\\sqrt", "\\pi", "\\infty", "\\sum")
        return tok in ("(", "{") or (tok == "|" and not self.in_abs)

    def term(self):
        first = self.unary()
        if isinstance(first, Struct) and first.kind == "matrix":
            while self.peek()[1] in MUL_CMDS or self.peek()[1] == "*" or self.peek()[0] == "begin":
                if self.peek()[0] != "begin":
                    self.take()
                first = _mat_mul(first, self.unary())
        if isinstance(first, Struct) and not (self.peek()[1] in ("*", "/", ":") or self.peek()[1] in MUL_CMDS
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
                if tok in FRAC_CMDS and len(factors) == 1 and factors[0][0] == "num":
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
        if tok in FUNC_LETTERS and self.peek()[1] == "(":
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
            if tok in GREEK:
                return ("sym", tok[1:])
            if tok in FRAC_CMDS:
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
            if tok in FUNCS:
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


def only_symbols(node) -> bool:
    """Only symbols (math-verify's assignment test): x, a_3, f(x), AB, |AB|, NO/BO."""
    if isinstance(node, Struct):
        return False
    tag = node[0]
    if tag in ("sym", "idx"):
        return True
    if tag == "mul":
        return all(only_symbols(t) for t in node[1])
    if tag == "div":
        return (only_symbols(node[1]) or node[1] == ("num", 1, False)) and only_symbols(node[2])
    if tag == "abs":
        return only_symbols(node[1])
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
