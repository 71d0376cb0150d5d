"""Run as a script by ``test_math_worker.py`` (a fresh interpreter, so the test process keeps
unpatched libraries): calls the parsing libraries through their public entry points on text that
reaches each hardening target, before and after ``harden()``, counting calls of sympy's
``eval_expr`` (where parsed text is ``eval``-ed). Prints one JSON object."""

from __future__ import annotations

import json

import sympy
import sympy.parsing.sympy_parser as spp
from latex2sympy2_extended.latex2sympy2 import latex2sympy
from math_verify import ExprExtractionConfig, parse

from rewards.math import _worker

EVALS: list[str] = []
_real_eval_expr = spp.eval_expr


def _counting_eval_expr(code, local_dict, global_dict):
    EVALS.append(code)
    return _real_eval_expr(code, local_dict, global_dict)


# name -> call through a public entry point, reaching one hardening target
PROBES = {
    "l2s.convert_number": lambda: latex2sympy("1,000"),  # comma-number set path
    "l2s.parse_number": lambda: latex2sympy("12"),
    "mvp.Number": lambda: parse("The answer is 42", [ExprExtractionConfig()], parsing_timeout=None),
    "mvp.parse_expr_cached": lambda: parse("The answer is 1/2 + 3", [ExprExtractionConfig()],
                                           parsing_timeout=None),
}


def run_probes() -> dict:
    out = {}
    for name, call in PROBES.items():
        EVALS.clear()
        try:
            value = repr(call())
        except Exception as exc:
            value = f"raised {type(exc).__name__}"
        out[name] = {"value": value, "evals": len(EVALS)}
    return out


def eval_guard() -> str:
    """What a sympify of a string gives inside the worker's parse (where model text is parsed)."""
    saved = _worker._parse_cached
    _worker._parse_cached = lambda text: sympy.sympify(text)
    try:
        return repr(_worker._parse("2+3"))
    except ValueError as exc:
        return f"raised ValueError: {exc}"
    finally:
        _worker._parse_cached = saved


def main() -> None:
    spp.eval_expr = _counting_eval_expr
    plain = run_probes()
    _worker.harden()
    hardened = run_probes()
    print(json.dumps({"plain": plain, "hardened": hardened, "eval_guard": eval_guard(),
                      "missing": _worker.missing_targets()}))


if __name__ == "__main__":
    main()
