"""Answer extraction from model responses (plain string work: nothing here evaluates the text).

Two modes, picked by the math verifier's ``extract`` option:

- ``"boxed"`` (strict, the RL default): the last ``\\boxed{...}`` / ``\\fbox{...}`` with balanced
  braces. Boxes written one after another ("\\boxed{1} and \\boxed{2}") form one answer "1, 2".
  With ``require_think_close=True`` only text after the last ``</think>`` counts, and a response
  without a finished thinking section has no answer.
- ``"lenient"``: the boxed answer if there is one, else an answer phrase ("final answer is X",
  "Answer: X", "答案：X"), else the last inline or display math, else the last number or fraction
  in the text. Multiple-choice letters are handled by :func:`extract_choice`.

Every function is linear in the input length (regexes are anchored on literal prefixes and never
nest quantifiers), so 100k-character responses are cheap.

    >>> extract_answer(r"so \\boxed{\\frac{1}{2}}.", "boxed")
    '\\\\frac{1}{2}'
"""

from __future__ import annotations

import re

THINK_CLOSE = "</think>"
MAX_ANSWER_CHARS = 2000  # a longer "answer" is not an answer; the verifier says so

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Text allowed between consecutive boxes of one answer: separators, "and", "or", spacing macros,
# math delimiters. Anything else (a sentence) breaks the group.
_BOX_JOINER_NOISE_RE = re.compile(
    r"\\text\{[^{}]{0,30}\}|\\[()\[\]]|\\q?quad\b|\\[,;! ]|[$~&,;.:]|"
    r"\b[a-zA-Z](?:_\{?\w{1,3}\}?)?\s*="
)


def _joins_boxes(between: str) -> bool:
    """Whether the text between two boxes keeps them one answer ("and", "\\quad", "y_2 =")."""
    if len(between) > 80:
        return False
    words = _BOX_JOINER_NOISE_RE.sub(" ", between).split()
    if not words:
        return True
    return len(words) <= 3 and all(len(w) <= 8 for w in words) and any(
        w.lower() in ("and", "or", "et", "und", "y", "和", "或") for w in words)


def strip_think(text: str, require_close: bool = False) -> str | None:
    """Text after the last ``</think>``; without one: the text, or None if ``require_close``."""
    idx = text.rfind(THINK_CLOSE)
    if idx >= 0:
        return text[idx + len(THINK_CLOSE):]
    return None if require_close else text


def _brace_matches(text: str) -> dict[int, int]:
    """Index of each '{' -> index just past its matching '}', in one pass (escapes skipped)."""
    matches: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            matches[stack.pop()] = i + 1
        i += 1
    return matches


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """All top-level ``\\boxed{...}`` as (start, end, content); unbalanced boxes are skipped.
    Linear time, also for inputs made of thousands of unclosed boxes."""
    starts = [m for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    close = _brace_matches(text)
    spans: list[tuple[int, int, str]] = []
    pos = 0
    for m in starts:
        if m.start() < pos:
            continue  # nested inside the previous box
        end = close.get(m.end() - 1)
        if end is None:
            continue
        spans.append((m.start(), end, text[m.end():end - 1].strip()))
        pos = end
    return spans


def last_boxed(text: str) -> str | None:
    """The final boxed answer, joining adjacent boxes ("\\boxed{1}, \\boxed{2}" -> "1, 2")."""
    spans = boxed_spans(text)
    if not spans:
        return None
    group = [spans[-1]]
    for prev in reversed(spans[:-1]):
        between = text[prev[1]:group[0][0]]
        if not _joins_boxes(between):
            break
        group.insert(0, prev)
    parts = [s[2] for s in group if s[2]]
    return ", ".join(parts) if parts else None


_ANSWER_PHRASE_RE = re.compile(
    r"(?:final\s+answer(?:\s+is)?|the\s+answer\s+is|answer\s*:|answer\s+is|"
    r"réponse\s*(?:est|:)|答案\s*(?:是|为)?\s*[:：]?|antwort\s*:|respuesta\s*:)"
    r"\s*[:：]?\s*",
    re.IGNORECASE,
)
_MATH_SPAN_RE = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\\$])\$([^$\n]+?)(?<!\\)\$", re.DOTALL
)
_WHOLE_MATH_RE = re.compile(r"\$\$(.+)\$\$|\$([^$]+)\$|\\\((.+)\\\)|\\\[(.+)\\\]", re.DOTALL)
_NUMBER_RE = re.compile(
    r"\\[dtc]?frac\{-?\d+\}\{\d+\}"
    r"|(?<![A-Za-z0-9_.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:[.,]\d+)?(?:\s*/\s*\d+)?\s*(?:%|\\%)?"
    r"|(?<![A-Za-z0-9_.])-?\.\d+"
)
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "sqrt", "frac", "infty", "cdot",
               "times", "left", "right", "begin", "end", "pmatrix", "bmatrix", "matrix", "array",
               "text", "mathrm", "boxed", "and", "pm", "cup", "cap", "leq", "geq", "neq", "arcsin",
               "arccos", "arctan", "exp", "sinh", "cosh", "tanh", "min", "max", "gcd", "lcm",
               "dfrac", "tfrac", "quad", "circ", "approx", "le", "ge", "lt", "gt", "mid", "emptyset"}


def looks_like_math(s: str) -> bool:
    """No prose: every run of 3+ letters is a LaTeX command or a known function name."""
    s = re.sub(r"\\text\{[^{}]*\}", " ", s)
    s = re.sub(r"\\[A-Za-z]+", " ", s)
    if re.search(r"[^\x00-\x7f²³°±×÷−≤≥≠√π∞]", s):
        return False
    return all(w.lower() in _MATH_WORDS for w in _WORD_RE.findall(s))
_TRAILING_JUNK_RE = re.compile(
    r"(?:\s*(?:I hope it is correct|<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>).*)$",
    re.IGNORECASE | re.DOTALL,
)


def _math_spans(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None).strip() for m in _MATH_SPAN_RE.finditer(text)]


def _after_phrase(text: str) -> str | None:
    matches = list(_ANSWER_PHRASE_RE.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end():][:MAX_ANSWER_CHARS]
    tail = _TRAILING_JUNK_RE.sub("", tail)
    head = tail.lstrip()
    spans = _math_spans(tail)
    if spans and head[:1] in ("$", "\\"):
        return spans[0]
    # up to the end of the sentence / line
    line = re.split(r"\n|(?<=[^\d\s])\.(?:\s|$)|。", tail, maxsplit=1)[0]
    line = line.strip().rstrip(".").strip()
    if not line:
        return None
    if looks_like_math(line):
        return line
    return first_number(line) or (spans[0] if spans else None)


def last_number(text: str) -> str | None:
    """The last number-looking token (integer, decimal, a/b, \\frac{a}{b}, percentage)."""
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m.group(0).strip()
    return last


def first_number(text: str) -> str | None:
    m = _NUMBER_RE.search(text)
    return m.group(0).strip() if m else None


def extract_answer(text: str, mode: str = "boxed", require_think_close: bool = False) -> str | None:
    """The answer string a response commits to, or None. ``mode``: "boxed" | "lenient"."""
    if mode not in ("boxed", "lenient"):
        raise ValueError(f"extract mode {mode!r}; valid: 'boxed', 'lenient'")
    body = strip_think(text, require_think_close)
    if body is None:
        return None
    if mode == "boxed":
        return last_boxed(body)
    spans_all = boxed_spans(body)
    boxed = last_boxed(body) if spans_all else None
    phrases = list(_ANSWER_PHRASE_RE.finditer(body))
    if boxed is not None and not (phrases and phrases[-1].start() > spans_all[-1][1]):
        return boxed
    phrase = _after_phrase(body)
    if phrase:
        return phrase
    if boxed is not None:
        return boxed
    stripped = body.strip()
    whole = _WHOLE_MATH_RE.fullmatch(stripped)
    if whole and len(stripped) <= MAX_ANSWER_CHARS:
        return next(g for g in whole.groups() if g is not None).strip()
    if 0 < len(stripped) <= 1000 and looks_like_math(stripped) and "$" not in stripped:
        return stripped  # the whole response is a bare answer
    spans = _math_spans(body[-20000:])
    if spans and looks_like_math(spans[-1]):
        return spans[-1]
    number = last_number(body[-20000:])
    if number:
        return number
    if spans:
        return spans[-1]
    return stripped if 0 < len(stripped) <= 40 and "\n" not in stripped else None


_CHOICE_ANCHOR_RE = re.compile(
    r"(?:answer|réponse|respuesta|antwort|答案|option|choice)\W{0,3}(?:\w+\W+){0,4}?"
    r"\(?([A-J])\)?(?![A-Za-z])",
    re.IGNORECASE,
)
_CHOICE_LEAD_RE = re.compile(r"^\s*\(?([A-J])(?:\)|\.|:|。|(?![A-Za-z*^/+=_-]))")
_CHOICE_ANY_RE = re.compile(r"(?<![A-Za-z\\{])\(?([A-J])\)?(?![A-Za-z*^/+=_])")


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter: after an answer anchor, else a leading letter, else the last one."""
    body = strip_think(text) or ""
    body = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", body)
    if re.fullmatch(r"\s*\(?([A-J])\)?[.)]?\s*", body):
        return body.strip().strip("().")
    boxed = last_boxed(body)
    if boxed is not None:
        inner = re.sub(r"\\text(?:bf)?\{([^{}]*)\}", r"\1", boxed).strip().strip("()").strip()
        if len(inner) == 1 and inner.upper() in "ABCDEFGHIJ":
            return inner.upper()
    anchored = [m.group(1) for m in _CHOICE_ANCHOR_RE.finditer(body) if m.group(1).isupper()]
    if anchored:
        return anchored[-1]
    lead = _CHOICE_LEAD_RE.match(body)
    if lead:
        return lead.group(1)
    letters = [m.group(1) for m in _CHOICE_ANY_RE.finditer(body[-2000:])]
    return letters[-1] if letters else None
