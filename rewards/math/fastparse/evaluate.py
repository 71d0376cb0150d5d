"""Evaluation of parsed trees under one bounded budget: exact rational values (:func:`exact`)
and floats that carry their own error and influence bounds (:class:`Val`, :func:`approx`), at
fixed sample points for symbols (:func:`sample_envs`)."""

from __future__ import annotations

import cmath
import contextvars
import functools
import math
import time
import zlib
from fractions import Fraction
from typing import NamedTuple

from rewards.math.fastparse.tokens import Refuse

MAX_POW_BITS = 4000
MAX_MAGNITUDE = 1e250
MAX_STEPS = 20_000  # node evaluations per comparison, across all nesting and all points
MAX_SECONDS = 0.1  # wall-clock guard per comparison (a backstop: MAX_STEPS binds first)
# float evaluation (see ``Val``): what a value must satisfy to be compared at all
EPS = 2.0**-52
REL_ERR_MAX = 1e-12  # bound on the relative rounding error of a value
INFLUENCE_MIN = 1e-9  # every non-zero part must move the value by at least this, relatively
MAX_FLOAT_HEIGHT = 10**15  # a literal needing more digits than a double holds is not floated
TINY = 1e-250
_MAX_SUM_TERMS = 500


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


def sample_envs(a, b, count: int = 4):
    syms = sorted(symbols(a) | symbols(b))
    ints = _has_sum(a) or _has_sum(b)
    for k in range(count):
        if ints:
            yield {s: complex(_INT_POINTS[(k + 3 * j) % len(_INT_POINTS)]) for j, s in enumerate(syms)}
        else:
            yield {s: complex(_POINTS[(k + 3 * j) % len(_POINTS)] + 0.1 * j) for j, s in enumerate(syms)}
