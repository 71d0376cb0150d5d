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

Modules: ``tokens`` (limits, alphabet, :class:`Refuse`), ``parser`` (grammar), ``evaluate``
(budget, exact and float values), ``compare`` (math-verify's rules on parsed answers).
"""

from rewards.math.fastparse.compare import compare_values, expr_equal, structural_compare
from rewards.math.fastparse.parser import Struct, parse
from rewards.math.fastparse.tokens import MAX_CHARS, MAX_DEPTH, Refuse

__all__ = ["Refuse", "Struct", "parse", "compare_values", "expr_equal", "structural_compare",
           "MAX_CHARS", "MAX_DEPTH"]
