"""Answer extraction, number normalisation and verifiers."""

from fractions import Fraction

import pytest

from slgjax.tasks import (
    Problem,
    ProblemVerifier,
    canonical_answer,
    extract_answer,
    extract_boxed,
    extract_last_number,
    extract_stated_answer,
    is_correct,
    math_verifier,
    normalize_number,
    parse_answer,
)

# (response, canonical final answer); None means no answer can be found.
EXTRACTION_CASES = [
    ("The answer is 18.", "18"),
    ("She sells 9 eggs, so 9 * 2 = 18. The answer is 18", "18"),
    ("So the total is 42", "42"),
    ("First 3, then 5, finally 7.", "7"),
    ("It costs $1,234 in total.", "1234"),
    ("The answer is $18 per day.", "18"),
    ("The answer is 18.0", "18"),
    ("The answer is 3/4.", "3/4"),
    ("answer: 0.75", "3/4"),
    ("Final answer: -4", "-4"),
    ("x = -4", "-4"),
    ("5 - 3 - 6 = -4", "-4"),
    ("from 5-3 we get", "3"),
    ("The rate is 25%.", "25"),
    ("#### 1,000", "1000"),
    ("Therefore \\boxed{42}.", "42"),
    ("\\boxed{\\frac{3}{4}}", "3/4"),
    ("\\boxed{\\dfrac{-3}{6}}", "-1/2"),
    ("we get \\boxed{x = 5}", "5"),
    ("\\boxed{1{,}000}", "1000"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\text{(B)}}", "(b)"),
    ("The answer is **42**.", "42"),
    ("The answer is $\\frac{1}{2}$.", "1/2"),
    ("The answer is 3.14.", "157/50"),
    ("total \u22127", "-7"),
    ("about .5 of it", "1/2"),
    ("The answer is 12. Then I checked 13.", "12"),
    ("The answer is 7\nBut later 9", "7"),
    ("no numbers here", None),
    ("", None),
    ("Final Answer: 070", "70"),
]


@pytest.mark.parametrize(("response", "expected"), EXTRACTION_CASES)
def test_parse_answer_table(response, expected):
    assert parse_answer(response) == expected


def test_extraction_table_size():
    assert len(EXTRACTION_CASES) >= 25


def test_boxed_nested_braces():
    text = "so \\boxed{\\frac{\\sqrt{2}}{2}} and more"
    assert extract_boxed(text) == "\\frac{\\sqrt{2}}{2}"


def test_boxed_unclosed_is_ignored():
    assert extract_boxed("\\boxed{12") is None
    assert extract_answer("\\boxed{12") == "12"


def test_stated_answer_keeps_decimal_point():
    assert extract_stated_answer("The answer is 2.5 apples. Done") == "2.5 apples"


def test_last_number_keeps_fraction_and_sign():
    assert extract_last_number("it is -3/4") == "-3/4"
    assert extract_last_number("x2 and y3") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("18", Fraction(18)),
        ("18.0", Fraction(18)),
        ("1,000", Fraction(1000)),
        ("$1,234.50", Fraction(2469, 2)),
        ("-7", Fraction(-7)),
        ("+7", Fraction(7)),
        ("3/4", Fraction(3, 4)),
        ("6/8", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("-\\frac{1}{2}", Fraction(-1, 2)),
        ("25%", Fraction(25)),
        ("25\\%", Fraction(25)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("18 \\text{ dollars}", Fraction(18)),
        ("90^\\circ", Fraction(90)),
        ("12.", Fraction(12)),
        ("1,5", None),
        ("3/0", None),
        ("abc", None),
        ("", None),
        ("1 2", None),
    ],
)
def test_normalize_number(text, value):
    assert normalize_number(text) == value


@pytest.mark.parametrize(
    ("answer", "canonical"),
    [
        ("18", "18"),
        ("#### 1,000", "1000"),
        ("0.750", "3/4"),
        ("18 dollars", "18"),
        (" Paris ", "paris"),
    ],
)
def test_canonical_answer(answer, canonical):
    assert canonical_answer(answer) == canonical


def test_is_correct_numeric_forms():
    assert is_correct("The answer is 1,000.", "1000")
    assert is_correct("The answer is 0.5", "1/2")
    assert not is_correct("The answer is 0.333", "1/3")
    assert not is_correct("I do not know", "5")


def test_math_verifier_returns_floats():
    assert math_verifier("q", "The answer is 18.", "18") == 1.0
    assert math_verifier("q", "The answer is 17.", "18") == 0.0
    assert math_verifier("q", "The answer is 18.", "#### 18") == 1.0


def test_verifiers_follow_lm_protocol():
    from slgjax.lm.scorers import Verifier, VerifierScorer

    problems = [
        Problem(id="a", question="2+2?", answer="4", source="test"),
        Problem(id="b", question="3+3?", answer="6", source="test"),
    ]
    verifier = ProblemVerifier(problems)
    assert isinstance(math_verifier, Verifier)
    assert isinstance(verifier, Verifier)

    scorer = VerifierScorer(verifier, {p.question: p.answer for p in problems})
    scores = scorer.score(["2+2?", "3+3?", "3+3?"], ["The answer is 4", "It is 5", "\\boxed{6}"])
    assert scores.tolist() == [1.0, 0.0, 1.0]


def test_problem_verifier_rejects_repeated_questions():
    problems = [Problem(id=i, question="same", answer="1", source="test") for i in ("a", "b")]
    with pytest.raises(ValueError, match="same question"):
        ProblemVerifier(problems)


def test_problem_verifier_unknown_question():
    verifier = ProblemVerifier([Problem(id="a", question="q", answer="1", source="t")])
    with pytest.raises(ValueError, match="no problem"):
        verifier("other", "1", "1")


def test_docstring_examples():
    import doctest

    import slgjax.tasks.extraction as module

    failures, tried = doctest.testmod(module)
    assert tried >= 2
    assert failures == 0
