"""Tokens of the fast parser: the input limits, the supported alphabet and commands, and
:class:`Refuse`, which every stage raises to decline an input (the worker path decides then)."""

from __future__ import annotations

import re

MAX_CHARS = 400
MAX_DEPTH = 40
MAX_DIGITS = 60


class Refuse(Exception):
    """The fast parser declines this input (the worker path decides instead)."""


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
MUL_CMDS = {"\\cdot", "\\times"}
FUNCS = {"\\sin", "\\cos", "\\tan", "\\sec", "\\csc", "\\cot", "\\ln", "\\exp"}
GREEK = {"\\alpha", "\\beta", "\\gamma", "\\delta", "\\theta", "\\phi", "\\varphi", "\\lambda",
          "\\mu", "\\sigma", "\\omega", "\\rho", "\\tau", "\\psi", "\\xi", "\\eta", "\\zeta", "\\nu",
          "\\kappa", "\\chi"}
FRAC_CMDS = {"\\frac", "\\dfrac", "\\tfrac"}
_SKIP_CMDS = {"\\left", "\\right", "\\displaystyle", "\\,", "\\!"}
FUNC_LETTERS = {"f", "g", "h", "F", "G", "P", "Q", "W"}


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
