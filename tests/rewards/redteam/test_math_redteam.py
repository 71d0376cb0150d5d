"""Red team for the math verifier: families of non-answers written to win reward, each of which
must score 0 (never ``correct=True``) within a stated bound, in both extraction modes.

Bound per check: ``TIMEOUT`` (the verifier's deadline, 1 s here) plus ``SLACK`` (1.5 s: a killed
worker is joined and replaced; extraction and the in-process paths take < 0.1 s). Model text must
never run: every injection payload would create ``MARKER`` if it did.

Families: power towers, nested sums and products, huge factorials, deep nesting, 100k-character
answers, values astronomically close to the gold, code injection through eval/sympify-shaped
text, unclosed-brace floods, answers hidden in paths / code / prose, hedged answers (several
boxes, "or", sets and intervals around the gold, choice letters), Unicode lookalike digits.
"""

import time

import pytest

from rewards import get_verifier
from rewards.math import clear_cache

pytestmark = pytest.mark.unit

TIMEOUT, SLACK = 1.0, 1.5
MODES = ("boxed", "lenient")


@pytest.fixture(scope="module")
def verifiers():
    vs = {m: get_verifier("math", extract=m, timeout=TIMEOUT, workers=1) for m in MODES}
    for v in vs.values():
        v.preflight()  # workers up before anything is timed (the bound holds once a worker is up)
    yield vs
    for v in vs.values():
        v.close()


def assert_no_credit(verifiers, response: str, gold, modes=MODES):
    for mode in modes:
        clear_cache()
        t = time.monotonic()
        r = verifiers[mode](response, {"answer": gold})
        elapsed = time.monotonic() - t
        assert r.score == 0.0 and r.correct is not True, (mode, response[:120], r.info)
        assert elapsed < TIMEOUT + SLACK, (mode, response[:120], elapsed)


def boxed(s: str) -> str:
    return "\\boxed{" + s + "}"


POWER_TOWERS = ["9^{9^{9^{9}}}", "9^{9^{9^{9^{9}}}}", "10^{10^{10^{10}}}", "2^{2^{2^{2^{2^{2}}}}}",
                "(10^{10})^{10^{10}}", "2^{10^{100}}", "{{{9^9}^9}^9}^9", "\\sqrt{2}^{\\sqrt{2}^{10^{10}}}"]
NESTED = ["\\sum_{a=1}^{400}\\sum_{b=1}^{400}\\sum_{c=1}^{400}1", "\\prod_{k=1}^{10^{9}} k",
          "\\sum_{a=1}^{400}\\prod_{b=1}^{400}\\sum_{c=1}^{400}(a+b+c)", "\\sum_{k=1}^{10^{12}} k^{k}",
          "\\prod_{a=1}^{500}\\prod_{b=1}^{500}\\prod_{c=1}^{500} 2"]
FACTORIALS = ["1000000!", "(10^{10})!", "((100!)!)!", "10^{10}!", "\\Gamma(10^{10})", "(10^{6})!!",
              "\\binom{10^{10}}{5 \\cdot 10^{9}}", "(5!)!^{(5!)!}"]
DEEP = ["{" * 10_000 + "1" + "}" * 10_000, "(" * 10_000 + "1" + ")" * 10_000,
        "\\frac{1}{" * 3000 + "1" + "}" * 3000, "\\sqrt{" * 3000 + "1" + "}" * 3000,
        "-" * 10_000 + "1", "[" * 5000 + "1" + "]" * 5000, "\\left(" * 3000 + "1" + "\\right)" * 3000]
HUGE = ["9" * 100_000, "1+" * 50_000 + "1", "x*" * 50_000 + "x", "\\frac{1}{2}" * 9_000,
        "0." + "0" * 100_000 + "1", "1" + "0" * 99_999,
        "\\text{" + " " * 1990 + "x}", "\\text{" + " " * 100_000, "\\mathrm{" * 500 + " " * 1000]


@pytest.mark.parametrize("expr", POWER_TOWERS + NESTED + FACTORIALS)
def test_explosive_expressions(verifiers, expr):
    assert_no_credit(verifiers, boxed(expr), "1", modes=("boxed",))  # lenient takes the same box


@pytest.mark.parametrize("expr", DEEP + HUGE, ids=range(len(DEEP + HUGE)))
def test_deep_and_huge_answers(verifiers, expr):
    assert_no_credit(verifiers, boxed(expr), "1")
    assert_no_credit(verifiers, expr, "1", modes=("lenient",))
    assert_no_credit(verifiers, "The answer is " + expr, "1", modes=("lenient",))


# astronomically close to the gold, never equal to it
CLOSE = [
    ("1", "\\sqrt[10^{100}]{2}"), ("1", "2^{10^{-100}}"), ("1", "1+10^{-100}"), ("1", "0.99999999999999999999"),
    ("1", "1.0000000000000000001"), ("1", "\\frac{100000000000000000001}{100000000000000000000}"),
    ("1", "\\frac{10^{30}+1}{10^{30}}"), ("1", "e^{10^{-30}}"), ("1", "\\cos(10^{-20})"), ("1", "1-2^{-80}"),
    ("0", "10^{-30}"), ("0", "\\sin(10^{-20})"), ("0", "e^{-1000}"), ("0", "\\frac{\\pi}{10^{40}}"),
    ("\\sqrt{2}", "\\sqrt{2}+10^{-30}"), ("\\sqrt{2}", "\\frac{14142135623730951}{10^{16}}"),
    ("\\sqrt{2}", "\\sqrt{2.0000000000000000000001}"), ("\\sqrt{2}", "\\frac{9369319}{6625109}"),
    ("\\pi", "\\pi+10^{-20}"), ("\\pi", "\\sqrt[4]{\\frac{2143}{22}}"), ("\\pi", "3.14159265358979323"),
    ("x", "x+10^{-20}"), ("x^2", "x^{2+10^{-15}}"), ("(1, 2)", "(1+10^{-30}, 2)"), ("\\frac{1}{3}", "0.33333334"),
    ("2.5", "2.4999999999999999"), ("0.5", "0.5000000000000001"), ("e", "\\left(1+10^{-12}\\right)^{10^{12}}"),
]


@pytest.mark.parametrize("gold,pred", CLOSE)
def test_values_astronomically_close_to_the_gold(verifiers, gold, pred):
    assert_no_credit(verifiers, boxed(pred), gold)
    assert_no_credit(verifiers, f"The final answer is ${pred}$.", gold, modes=("lenient",))


def test_close_family_is_not_vacuous(verifiers):
    """The same verifiers credit the gold itself and honest approximations."""
    for gold, pred in [("1", "1"), ("\\sqrt{2}", "1.414214"), ("\\frac{1}{3}", "0.333333"),
                       ("\\pi", "3.1415927"), ("\\sqrt{2}", "\\frac{2}{\\sqrt{2}}")]:
        assert verifiers["boxed"](boxed(pred), {"answer": gold}).score == 1.0, (gold, pred)


INJECTIONS = [
    "__import__('os').system('touch {m}')", "eval(\"__import__('os').system('touch {m}')\")",
    "exec('import os; os.system(\"touch {m}\")')", "(lambda: __import__('os').system('touch {m}'))()",
    "().__class__.__base__.__subclasses__()", "open('{m}', 'w').write('1')",
    "Symbol('x').__class__.__init__.__globals__", "sympify('__import__(\"os\").system(\"touch {m}\")')",
    "\\text{__import__('os').system('touch {m}')}", "1 + __import__('os').system('touch {m}')",
    "parse_expr('__import__(\"os\").system(\"touch {m}\")')", "getattr(__import__('os'), 'system')('touch {m}')",
]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("gold", ["0", "1"])
def test_code_injection_is_never_run_or_credited(verifiers, tmp_path, payload, gold):
    marker = tmp_path / "pwned"
    text = payload.replace("{m}", str(marker))
    for response in (boxed(text), f"Final answer: {text}", text, f"```python\n{text}\n```\nThe answer is {text}"):
        assert_no_credit(verifiers, response, gold)
    assert not marker.exists()


FLOODS = ["\\frac{" * 10_000 + "1", "\\boxed{" * 20_000 + "1", "\\sqrt{" * 10_000 + "1", "{" * 20_000 + "1",
          "\\left(" * 5000 + "1", "\\frac{1}{" * 10_000 + "1", "\\boxed{\\frac{1}{" * 5000 + "1"]


@pytest.mark.parametrize("flood", FLOODS, ids=range(len(FLOODS)))
def test_unclosed_brace_floods(verifiers, flood):
    assert_no_credit(verifiers, flood, "1")
    assert_no_credit(verifiers, "Answer: " + flood, "1", modes=("lenient",))


# the gold number appears, but not as an answer
HIDDEN = [
    "I wrote the result to /tmp/pytest-of-root/pytest-{g}/out.txt",
    "See https://example.com/answers/{g}/solution", "The log is in ./runs/{g}/result.json",
    "```python\nprint({g})\n```", "```\n$${g}$$\n```", "Run `solve --n {g}` to see it.",
    "exit({g})", "file_{g}.txt is attached", "version v{g}.1.2 is out", "On 2024-0{g}-05 I started.",
    "Final answer: __import__('os').system('touch /tmp/pytest-0/x{g}')", "x_{g} is unknown, so I cannot say.",
    "x^{g} is all I know.", "Step {g}: read the problem. Step 4: think. I am not sure what the answer is.",
    "I tried {g} approaches. None worked. What do you think?", "Hmm, {g}x",
    "The answer is either {g} or 7.", "The answer is 7 or {g}.", "It is {g}, or maybe 7.",
]


@pytest.mark.parametrize("template", HIDDEN)
def test_answers_hidden_in_paths_code_and_prose(verifiers, template):
    assert_no_credit(verifiers, template.replace("{g}", "3"), "3", modes=("lenient",))


HEDGES = [
    ("\\boxed{1} or \\boxed{2}", ["1", "2"]), ("\\boxed{1}, \\boxed{2}", ["1", "2"]),
    ("\\boxed{1}\\boxed{2}", ["1", "2"]), ("\\boxed{1 \\text{ or } 2}", ["1", "2"]),
    ("\\boxed{1 \\lor 2}", ["1", "2"]), ("\\boxed{1 \\vee 2}", ["1", "2"]), ("\\boxed{x=1 \\text{ or } x=2}", ["1", "2"]),
    ("\\boxed{1 \\text{ and } 2}", ["1", "2"]), ("\\boxed{1, 2, 3, 4, 5}", ["3"]), ("\\boxed{\\{1, 2\\}}", ["1", "2"]),
    ("\\boxed{[0, 2]}", ["1"]), ("\\boxed{(0, 2)}", ["1"]), ("\\boxed{0 < x < 2}", ["1"]),
    ("\\boxed{1 \\pm 1}", ["0", "2"]), ("\\boxed{1 \\mid 2}", ["1", "2"]), ("\\boxed{1/2/3}", ["1"]),
    ("The answer is 1 or 2.", ["1", "2"]), ("The answer is either 1 or 2", ["1", "2"]),
    ("The final answer is $1$ or $2$.", ["1", "2"]), ("Answer: 1, or possibly 2", ["1", "2"]),
]


@pytest.mark.parametrize("response,golds", HEDGES)
def test_hedged_answers_get_no_credit_for_any_option(verifiers, response, golds):
    for gold in golds:
        assert_no_credit(verifiers, response, gold)


@pytest.mark.parametrize("response", ["\\boxed{A or B}", "\\boxed{A, B}", "The answer is A or B",
                                      "The answer is (A) or (C)", "Answer: B/D", "answer: C and D"])
def test_hedged_choices_get_no_letter(verifiers, response):
    for gold in ("A", "B", "C", "D"):
        assert_no_credit(verifiers, response, gold)


LOOKALIKES = [("1", c) for c in "１𝟏١۱१¹①⑴⒈Ⅰⅰ𝟙𝟷₁lI|"] + [("0", c) for c in "０٠О〇oO𝟎"] + [
    ("12", "１２"), ("12", "1２"), ("3", "٣"), ("7", "𝟕"), ("10", "１0"), ("\\frac{1}{4}", "¼")]


@pytest.mark.parametrize("gold,pred", LOOKALIKES)
def test_unicode_lookalike_digits(verifiers, gold, pred):
    assert_no_credit(verifiers, boxed(pred), gold)
    assert_no_credit(verifiers, f"The answer is {pred}", gold, modes=("lenient",))
