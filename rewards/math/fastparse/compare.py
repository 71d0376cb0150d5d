"""Comparison of parsed answers under math-verify's rules: expressions (exactly, by decimals'
digits, or by floats within their error bounds), then tuples, intervals and unions, sets and
lists, relations and ranges, matrices; :func:`structural_compare` is the entry point."""

from __future__ import annotations

import math
from fractions import Fraction

from rewards.math.fastparse.evaluate import EPS, Val, approx, bounded, exact, sample_envs, symbols
from rewards.math.fastparse.parser import Struct, only_symbols, parse, undouble
from rewards.math.fastparse.tokens import Refuse
from rewards.math.fastpath import clean, decimal_match, finite_decimal, round6

FLOAT_EXACT_LIMIT = 1e12  # beyond this, floats cannot tell n from n+1: decline
MAX_RATIONAL_VS_FLOAT = 10**6  # a rational taller than this is not float-compared to an irrational
EQ_SLACK = 32  # equal: the difference is within 32x the propagated error bounds
NE_TOL = 1e-9  # not equal: the values differ by more than this, relatively


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
    for env in sample_envs(a, b):
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
    for env in sample_envs(a, b):
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
    return r.op == "=" and only_symbols(r.items[0])


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
