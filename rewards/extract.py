"""Answer extraction from model responses (plain string work: nothing here evaluates the text).

Two modes, picked by the math verifier's ``extract`` option:

- ``"boxed"`` (strict, the RL default): the last ``\\boxed{...}`` / ``\\fbox{...}`` with balanced
  braces. Boxes written one after another ("\\boxed{1} and \\boxed{2}") form one answer "1, 2".
  With ``require_think_close=True`` only text after the last ``</think>`` counts, and a response
  without a finished thinking section has no answer.
- ``"lenient"``: the boxed answer if there is one (unless an answer phrase follows it), else the
  answer phrase's line ("final answer is X", "Answer: X", "答案：X"), else the whole response if it
  is one answer (one math span, bare math, or a word or three), else the final math span, else
  the last standalone number of the final sentence. Multiple-choice letters: :func:`extract_choice`.

Threat model. The response is written by the policy being trained, which is searching for
reward; extraction decides what is compared, so it must not manufacture an answer the response
did not commit to. Defended, in lenient mode:

- numbers out of non-answer text: code (fenced or inline code is removed first; a line that looks
  like code (:func:`looks_like_code`: dunders, ``f('...')``, ``a.b(``, ``lambda``/``import``/
  ``exec``/``eval``, paths, URLs) gives no number), and numbers that do not stand alone (inside
  identifiers, paths, versions, dates, call arguments: ``pytest-0``, ``file_0``, ``/tmp/42/``,
  ``v1.2``, ``2024-01-05``, ``exit(0)``); prose only through an answer phrase or the final
  sentence, never the last number anywhere in the text;
- malformed text: a candidate with unbalanced braces (10,000 unclosed ``\\frac{`` ending in 1)
  is no answer;
- hedges: "1 or 2", "either 3 or maybe 4" become the list answer "1, 2", which equals a list
  gold and never a single one; boxes joined by "or" likewise; a choice hedge ("A or B", a box
  with two letters) has no letter;
- non-ASCII digits are not digits (``\\boxed{１}``).
Not defended: what an answer phrase is followed by is taken at its word ("Answer: see step 3"
gives 3); the final math span is taken even if prose follows it; "last box wins" (a response that
boxes 1, argues, then boxes 2 answers 2, which gains nothing over answering 2).

Bounds: every function is linear in the input length (regexes are anchored on literal prefixes
or lookbehinds and never nest quantifiers; measured: 100k-character hostile inputs take 10-25 ms
here, 2-core VM); the final-sentence and span searches read at most the last 20,000 characters.

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
# A number standing on its own: not part of a word, an identifier, a path, a version, a date, a
# quoted string, a call's argument or a script (pytest-0, file_0, /tmp/0/, v1.2, 2024-01-05, '0',
# exit(0), x_{3}, x^2);
# a leading minus only where it cannot be a hyphen. Digits are ASCII. A unit may follow
# ("1,000.99m²", "5 cm"), a lone letter may not ("2x").
_NUM_BODY = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:[.,][0-9]+)?(?:\s*/\s*[0-9]+)?|\.[0-9]+"
_NUMBER_RE = re.compile(
    r"\\[dtc]?frac\{-?[0-9]+\}\{[0-9]+\}"
    r"|(?<![A-Za-z0-9_]\()(?<![_^]\{)(?:(?<![A-Za-z0-9_)\]}.\\/'\"`^-])-|(?<![A-Za-z0-9_.\\/'\"`^-]))"
    rf"(?:{_NUM_BODY})(?![0-9_\\/'\"`(]|[.,-][0-9]|[A-Za-z](?![A-Za-z²³]))\s*(?:%|\\%)?"
)
# Python-shaped text: dunders, calls with string arguments, attribute calls, code keywords
# (a backslash makes them LaTeX: \lambda), paths, URLs, code fences.
_CODE_RE = re.compile(
    r"__|`|://|(?<![\\A-Za-z])(?:lambda|import|exec|eval|def|return|print|subprocess)\b"
    r"|\(\s*(['\"])[^'\"]*\1|(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\s*\("
    r"|(?:^|[\s(=:,])(?:~|\.{1,2})?/[A-Za-z0-9_.-]+/"
    r"|(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]"
    r"|\b[A-Za-z]:\\\\"
)
_CODE_BLOCK_RE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_SENTENCE_END_RE = re.compile(r"\n|。|(?<=[^0-9\s])[.!?](?=\s|$)|[!?](?=\s|$)")
# between two candidate answers, a word that offers a choice: "1 or 2", "either 3, or maybe 4"
_HEDGE_RE = re.compile(
    r"^\W*(?:(?:or|ou|oder|o|或|或者|还是|vel)(?:\s+(?:maybe|perhaps|possibly|else|even))?"
    r"|(?:maybe|perhaps|possibly|alternatively|otherwise))\W*$", re.IGNORECASE)
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])(?!and\b|or\b)[A-Za-z]{2,}\s+(?!and\b|or\b)[A-Za-z]{2,}\b")
# a short whole response that is a word answer ("odd", "Even", "no solution"), not a sentence
_WORD_ANSWER_RE = re.compile(r"[^\W\d_]+(?:[ -][^\W\d_]+){0,2}")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "sqrt", "frac", "infty", "cdot",
               "times", "left", "right", "begin", "end", "pmatrix", "bmatrix", "matrix", "array",
               "text", "mathrm", "boxed", "and", "pm", "cup", "cap", "leq", "geq", "neq", "arcsin",
               "arccos", "arctan", "exp", "sinh", "cosh", "tanh", "min", "max", "gcd", "lcm",
               "dfrac", "tfrac", "quad", "circ", "approx", "le", "ge", "lt", "gt", "mid", "emptyset"}
# what ends an answer's text: a sign-off or a chat-template token (everything after it goes)
_TRAILING_JUNK_RE = re.compile(r"I hope it is correct|<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>",
                               re.IGNORECASE)


def _cut_junk(text: str) -> str:
    """``text`` up to its first sign-off or template token (a search, not a ``\\s*...$`` match:
    that was quadratic on long runs of spaces)."""
    m = _TRAILING_JUNK_RE.search(text)
    return text[:m.start()].rstrip() if m else text


def looks_like_math(s: str) -> bool:
    """No prose: every run of 3+ letters is a LaTeX command or a known function name, and no
    two words of 2+ letters follow each other ("so it is 12")."""
    s = re.sub(r"\\text\{[^{}]*\}", " ", s)
    s = re.sub(r"\\[A-Za-z]+", " ", s)
    if re.search(r"[^\x00-\x7f²³°±×÷−≤≥≠√π∞]", s) or _PROSE_RE.search(s):
        return False
    return all(w.lower() in _MATH_WORDS for w in _WORD_RE.findall(s))


def looks_like_code(s: str) -> bool:
    """Python-shaped or path-shaped text (dunders, ``f('..')``, ``a.b(``, ``lambda``,
    ``/tmp/x/``, URLs, backticks): never an answer, and no number is taken out of it."""
    return _CODE_RE.search(s) is not None


def _balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


def _answer_shaped(s: str | None) -> str | None:
    """``s`` if it can be an answer: non-empty, balanced braces, not code."""
    if s is None:
        return None
    s = s.strip()
    return s if s and _balanced(s) and not looks_like_code(s) else None


def _math_spans(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None).strip() for m in _MATH_SPAN_RE.finditer(text)]


def numbers(text: str) -> list[str]:
    """The standalone numbers of ``text`` (see ``_NUMBER_RE``), in order."""
    return [m.group(0).strip() for m in _NUMBER_RE.finditer(text)]


def _hedge(line: str) -> str | None:
    """"1 or 2", "either 3 or maybe 4": all the offered answers as one list answer ("1, 2"), so
    that a hedge never equals a single gold; None when the line offers one answer."""
    found = list(_NUMBER_RE.finditer(line))
    for a, b in zip(found, found[1:]):
        if _HEDGE_RE.match(line[a.end():b.start()]):
            return ", ".join(m.group(0).strip() for m in found)
    return None


def _span_hedge(line: str) -> str | None:
    """"$1$ or $2$": the math spans offered as alternatives, as one list answer."""
    found = list(_MATH_SPAN_RE.finditer(line))
    for a, b in zip(found, found[1:]):
        if _HEDGE_RE.match(line[a.end():b.start()]):
            return ", ".join(next(g for g in m.groups() if g is not None).strip() for m in found)
    return None


def _number_of(line: str, which: int) -> str | None:
    """The first (``which=0``) or last (-1) standalone number of an answer line, the hedge's
    list if the line hedges, None if the line is code or malformed."""
    if looks_like_code(line) or not _balanced(line):
        return None
    hedge = _hedge(line)
    if hedge is not None:
        return hedge
    found = numbers(line)
    return found[which] if found else None


def last_number(text: str) -> str | None:
    """The last standalone number (integer, decimal, a/b, \\frac{a}{b}, percentage)."""
    found = numbers(text)
    return found[-1] if found else None


def first_number(text: str) -> str | None:
    found = numbers(text)
    return found[0] if found else None


def _after_phrase(text: str) -> str | None:
    """The answer after the last answer phrase: its math, its math-only line, or the first
    standalone number of its line."""
    matches = list(_ANSWER_PHRASE_RE.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end():][:MAX_ANSWER_CHARS]
    tail = _cut_junk(tail)
    spans = _math_spans(tail)
    line = re.split(r"\n|(?<=[^\d\s])\.(?:\s|$)|。", tail, maxsplit=1)[0].strip().rstrip(".").strip()
    hedge = _span_hedge(line)
    if hedge is not None:
        return hedge
    if spans and tail.lstrip()[:1] in ("$", "\\"):
        return _answer_shaped(spans[0])
    if not line:
        return None
    if looks_like_math(line) and not _hedge(line):
        return _answer_shaped(line)
    return _number_of(line, 0) or (_answer_shaped(spans[0]) if spans else None)


def _final_sentence(text: str) -> str | None:
    """The last sentence, if it is a sentence: some words, at most ``MAX_ANSWER_CHARS``."""
    tail = _cut_junk(text[-20000:])
    pieces = [p for p in _SENTENCE_END_RE.split(tail) if p and p.strip()]
    if not pieces:
        return None
    sentence = pieces[-1].strip()
    if len(sentence) > MAX_ANSWER_CHARS or not any(c.isalpha() for c in sentence):
        return None  # 20,000 parentheses around a 1 are no sentence
    return sentence


def _whole(body: str) -> str | None:
    """The whole response as an answer: one math span, or bare math, or a short single line."""
    stripped = body.strip()
    whole = _WHOLE_MATH_RE.fullmatch(stripped)
    if whole and len(stripped) <= MAX_ANSWER_CHARS:
        return _answer_shaped(next(g for g in whole.groups() if g is not None))
    if 0 < len(stripped) <= 1000 and looks_like_math(stripped) and "$" not in stripped:
        return _answer_shaped(stripped)
    found = list(_NUMBER_RE.finditer(stripped)) if len(stripped) <= 40 else []
    if len(found) == 1 and not re.search(r"\w", stripped[:found[0].start()] + stripped[found[0].end():]):
        return found[0].group(0).strip()  # one number with its currency signs: "$1,000.99", "\\$10"
    return None


def _lenient(body: str) -> str | None:
    spans_all = boxed_spans(body)
    boxed = last_boxed(body) if spans_all else None
    phrases = list(_ANSWER_PHRASE_RE.finditer(body))
    if boxed is not None and not (phrases and phrases[-1].start() > spans_all[-1][1]):
        return boxed
    prose = _CODE_BLOCK_RE.sub(" ", body)  # code is never where an answer is taken from
    phrase = _after_phrase(prose)
    if phrase:
        return phrase
    if boxed is not None:
        return boxed
    whole = _whole(prose)
    if whole:
        return whole
    spans = _math_spans(prose[-20000:])
    if spans and looks_like_math(spans[-1]) and _answer_shaped(spans[-1]):
        return spans[-1]
    sentence = _final_sentence(prose)
    number = _number_of(sentence, -1) if sentence else None
    if number:
        return number
    if spans and _answer_shaped(spans[-1]):
        return spans[-1]
    stripped = prose.strip()
    return stripped if len(stripped) <= 40 and _WORD_ANSWER_RE.fullmatch(stripped) else None


def extract_answer(text: str, mode: str = "boxed", require_think_close: bool = False) -> str | None:
    """The answer string a response commits to, or None. ``mode``: "boxed" | "lenient"."""
    if mode not in ("boxed", "lenient"):
        raise ValueError(f"extract mode {mode!r}; valid: 'boxed', 'lenient'")
    body = strip_think(text, require_think_close)
    if body is None:
        return None
    return last_boxed(body) if mode == "boxed" else _lenient(body)


_CHOICE_ANCHOR_RE = re.compile(
    r"(?:answer|réponse|respuesta|antwort|答案|option|choice)\W{0,3}(?:\w+\W+){0,4}?"
    r"\(?([A-J])\)?(?![A-Za-z])",
    re.IGNORECASE,
)
_CHOICE_LEAD_RE = re.compile(r"^\s*\(?([A-J])(?:\)|\.|:|。|(?![A-Za-z*^/+=_-]))")
_CHOICE_ANY_RE = re.compile(r"(?<![A-Za-z\\{])\(?([A-J])\)?(?![A-Za-z*^/+=_])")
# after the answer's letter, another one offered with it: "(A) or (B)", "A/B", "A, B", "A and B"
_CHOICE_MORE_RE = re.compile(r"\s*(?:,|/|&|\bor\b|\band\b|\bou\b|\bet\b|\boder\b|\bund\b|或|和)\s*"
                             r"(?:maybe\s+|perhaps\s+)?\(?[A-J]\)?(?![A-Za-z])", re.IGNORECASE)


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
        if len({m.group(1) for m in _CHOICE_ANY_RE.finditer(inner)}) > 1:
            return None  # a box that offers several letters
    anchored = [m for m in _CHOICE_ANCHOR_RE.finditer(body) if m.group(1).isupper()]
    if anchored:
        last = anchored[-1]
        return None if _CHOICE_MORE_RE.match(body, last.end()) else last.group(1)
    lead = _CHOICE_LEAD_RE.match(body)
    if lead:
        return lead.group(1)
    letters = [m.group(1) for m in _CHOICE_ANY_RE.finditer(body[-2000:])]
    return letters[-1] if letters else None
