"""Answer extraction: strict boxed, </think> gating, lenient fallbacks, multiple choice."""

import pytest

from rewards.extract import extract_answer, extract_choice, last_boxed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text,expected", [
    ("\\boxed{42}", "42"),
    ("first \\boxed{1} then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{1} and \\boxed{2}", "1, 2"),
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "1, 2, 3"),
    ("\\boxed{1} is wrong, so the final result is \\boxed{2}", "2"),
    ("\\fbox{7}", "7"),
    ("\\boxed{1} \\boxed{2", "1"),
    ("no box here", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_think_gating():
    text = "<think>maybe \\boxed{1}</think> so \\boxed{2}"
    assert extract_answer(text, "boxed", require_think_close=True) == "2"
    assert extract_answer("<think>\\boxed{1} still thinking", "boxed", require_think_close=True) is None
    assert extract_answer("<think>\\boxed{1} still thinking", "boxed") == "1"


@pytest.mark.parametrize("text,expected", [
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
    ("Answer: 17", "17"),
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("so the number is 10 which is 1,000.99m²", "1,000.99"),
    ("We get $x = 5$ and then $y = 7$", "y = 7"),
    ("计划的比例为13/28", "13/28"),
    ("x^2 + 1", "x^2 + 1"),
    ("\\boxed{3} ... Final Answer: The final answer is $4$.", "4"),
    ("$1,000.99", "1,000.99"), ("\\$10", "10"),  # a whole response that is one number with its currency
])
def test_lenient(text, expected):
    assert extract_answer(text, "lenient") == expected


def test_boxed_mode_ignores_phrases():
    assert extract_answer("The answer is 5", "boxed") is None
    with pytest.raises(ValueError):
        extract_answer("x", "loose")


@pytest.mark.parametrize("text,expected", [
    ("The answer is (C).", "C"), ("D. it can't be A or B", "D"), ("B不是 A", "B"),
    ("therefore I think it's B", "B"), ("\\boxed{\\text{(C)}}", "C"), ("\\mathrm{E}*2", None),
])
def test_choice(text, expected):
    assert extract_choice(text) == expected


def test_linear_time_on_hostile_input():
    import time

    t = time.monotonic()
    extract_answer("\\boxed{" * 50_000, "lenient")
    extract_answer("$" * 100_000, "lenient")
    extract_answer("1," * 50_000, "lenient")
    extract_answer("\\boxed{\\text{" + " " * 100_000 + "}", "lenient")  # was quadratic (2.9 s alone)
    extract_answer(" " * 100_000 + "1", "lenient")
    assert time.monotonic() - t < 2.0


# lenient extraction takes an answer only from answer-shaped text
@pytest.mark.parametrize("text", [
    # the first-run failure: pytest's tmp path holds "pytest-0" and the gold was 0
    "Final answer: __import__('os').system('touch /tmp/pytest-of-root/pytest-0/test_model_text_is_never_0/pwned')",
    "pytest-0", "file_0", "I saved it to /tmp/run_42/out.txt", "See https://example.com/answers/42",
    "The log is at ./out/42/result.json", "version v1.2.3 is out", "The total is 2024-01-05.", "abc 10.0.0.1",
    "exit(0)", "print(0)", "os.system('0')", "lambda: 0", "```python\nprint(42)\n```", "```\n$42$\n```",
    "The value is `42`", "I have 3 apples. What do you think?", "Hmm, 2x", "Final answer: the value in cell B7",
    "\\frac{" * 10_000 + "1", "\\frac{" * 100 + "1", "{" * 5000 + "1", "\\sqrt{" * 300 + "1", "Answer: \\frac{1}{2",
    "The answer is １", "答案是 ١",
])
def test_lenient_takes_no_answer_from_paths_code_malformed_text_or_prose(text):
    answer = extract_answer(text, "lenient")
    assert answer is None or not any(c.isdigit() for c in answer), answer  # "The value is" at most


@pytest.mark.parametrize("text,expected", [
    ("The answer is either 1 or 2.", "1, 2"), ("The answer is 1 or 2", "1, 2"), ("It is 1 or maybe 2.", "1, 2"),
    ("Answer: 3, or possibly 4", "3, 4"), ("\\boxed{1} or \\boxed{2}", "1, 2"),
    # one answer with numbers around it is not a hedge
    ("Réponse: Janeth aura encore 220 $ à payer d'ici 12 mois.", "220"), ("Il a donc 3 + 10 = 13 oiseaux.", "13"),
    ("so it is 12.", "12"),  # prose made of short words is not a bare math answer
])
def test_lenient_hedges_become_one_list_answer(text, expected):
    assert extract_answer(text, "lenient") == expected


@pytest.mark.parametrize("text", ["The answer is A or B", "\\boxed{A or B}", "Answer: (A)/(C)", "answer: B and D"])
def test_choice_hedges_have_no_letter(text):
    assert extract_choice(text) is None


def test_numbers_stand_alone():
    from rewards.extract import numbers

    assert numbers("x_1 = 3, see step-2, file0, (7), 2024-01-05, -4 and 5-6, 1,000.99m² or 12%") == [
        "3", "7", "-4", "1,000.99", "12%"]
