"""Plain-data codec for values that cross the pipe between the checker and the candidate.

Only exact built-in types cross (None, bool, int, float, complex, str, bytes, list, tuple, dict,
set, frozenset; no subclasses), so the trusted side only ever holds genuine built-in values: an
object whose ``__eq__`` always returns True cannot reach a check. Nesting is capped at
``MAX_DEPTH``; decoding rejects anything it did not produce.
"""

import base64
import sys

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
MAX_DEPTH = 100


def enc(x, d=0):
    """A JSON-able form of ``x``; raises TypeError/ValueError for anything that is not plain."""
    if d > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return {"i": str(x)}
    if t is float:
        return {"f": repr(x)}
    if t is complex:
        return {"c": [repr(x.real), repr(x.imag)]}
    if t is bytes:
        return {"b": base64.b64encode(x).decode()}
    if t is list:
        return [enc(v, d + 1) for v in x]
    if t is tuple:
        return {"t": [enc(v, d + 1) for v in x]}
    if t is dict:
        return {"d": [[enc(k, d + 1), enc(v, d + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"fs" if t is frozenset else "s": [enc(v, d + 1) for v in x]}
    raise TypeError("not plain data: " + t.__name__)


def dec(x, d=0):
    """The value ``enc`` encoded; raises ValueError on anything else (depth included)."""
    if d > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if x is None or type(x) in (bool, str):
        return x
    if type(x) is list:
        return [dec(v, d + 1) for v in x]
    if type(x) is dict and len(x) == 1:
        (k, v), = x.items()
        if k == "i" and type(v) is str:
            return int(v)
        if k == "f" and type(v) is str:
            return float(v)
        if k == "c" and type(v) is list and len(v) == 2:
            return complex(float(v[0]), float(v[1]))
        if k == "b" and type(v) is str:
            return base64.b64decode(v, validate=True)
        if type(v) is list:
            if k == "t":
                return tuple(dec(i, d + 1) for i in v)
            if k == "d":
                return {dec(a, d + 1): dec(b, d + 1) for a, b in v}
            if k == "s":
                return {dec(i, d + 1) for i in v}
            if k == "fs":
                return frozenset(dec(i, d + 1) for i in v)
    raise ValueError("bad encoded value")


def has_nan(x, d=0):
    """Whether a decoded plain value holds a float/complex NaN anywhere (keys included)."""
    if d > MAX_DEPTH:
        return False
    t = type(x)
    if t is float:
        return x != x
    if t is complex:
        return x.real != x.real or x.imag != x.imag
    if t in (list, tuple, set, frozenset):
        return any(has_nan(v, d + 1) for v in x)
    if t is dict:
        return any(has_nan(k, d + 1) or has_nan(v, d + 1) for k, v in x.items())
    return False
