"""Find the final answer in a response and put numbers in one canonical form.

A response's final answer is, in this order of preference:

1. the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces nested
   to any depth;
2. the text after the last "The answer is", "Final answer:" or "answer:";
3. the text after the last GSM8K-style ``####`` marker;
4. the last number in the response.

Numbers are compared exactly as fractions: ``"1,000"``, ``"$1000"``,
``"1000.0"`` and ``"1000%"`` all read as 1000, and ``"0.75"``, ``"3/4"`` and
``"\\frac{3}{4}"`` as 3/4. A percent sign is dropped, not divided by 100, so
``"50%"`` matches the reference ``"50"``. Decimals are exact, so ``"0.333"``
does not match ``"1/3"``.
"""

import re
from fractions import Fraction

__all__ = [
    "canonical_answer",
    "extract_answer",
    "extract_boxed",
    "extract_last_number",
    "extract_stated_answer",
    "normalize_number",
    "parse_answer",
]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_STATED = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is\s*:?|:|=)\s*(?P<value>[^\n]*)",
    re.IGNORECASE,
)
_MARKER = re.compile(r"####\s*(?P<value>[^\n]*)")
_NUMBER = re.compile(
    r"""
    (?<![\w.])                          # not inside a word, not after a decimal point
    (?P<sign>[-+])?
    \$?\s?
    (?P<body>\d{1,3}(?:,\d{3})+(?:\.\d+)? | \d+(?:\.\d+)? | \.\d+)
    (?:\s*/\s*(?P<denominator>\d+(?:\.\d+)?))?
    (?:\s?%)?
    """,
    re.VERBOSE,
)
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?[\d.,]+)\s*\}\s*\{\s*([-+]?[\d.,]+)\s*\}")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{(?P<content>[^{}]*)\}")
_ASSIGNMENT = re.compile(r"^[A-Za-z]\w*\s*=\s*(?P<value>.+)$")


def _clean_latex(text: str) -> str:
    """Rewrite the LaTeX forms of numbers as plain text."""
    text = text.replace("\u2212", "-").replace("{,}", ",").replace("\\!", "")
    text = text.replace("\\$", "$").replace("\\%", "%").replace("\\,", "")
    text = text.replace("\\left", "").replace("\\right", "")
    return _LATEX_FRACTION.sub(r"\1/\2", text)


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text``, or None.

    Braces inside the box are matched, so ``\\boxed{\\frac{3}{4}}`` gives
    ``\\frac{3}{4}``. A box whose braces never close is ignored.
    """
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for position in range(start, len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:position].strip()
    return None


def _trim_statement(value: str) -> str:
    """Cut a stated answer at the end of its sentence and drop markdown and math delimiters."""
    value = re.split(r"\.(?=\s|$)", value, maxsplit=1)[0]
    value = value.strip().strip("*").strip()
    if len(value) > 1 and value.startswith("$") and value.endswith("$") and value.count("$") == 2:
        value = value[1:-1]
    return value.strip()


def extract_stated_answer(text: str) -> str | None:
    """Return what follows the last "The answer is" or "Final answer:" in ``text``, or None.

    The value ends at the end of its line or at a period followed by a space
    or the line end, so a decimal point does not end it.
    """
    matches = list(_STATED.finditer(text))
    for match in reversed(matches):
        value = _trim_statement(match.group("value"))
        if value:
            return value
    return None


def extract_last_number(text: str) -> str | None:
    """Return the last number in ``text`` as written (sign, ``$``, commas, fraction), or None.

    A minus sign counts only when it does not follow a word character, so the
    last number of ``"5-3"`` is ``"3"`` and that of ``"x = -4"`` is ``"-4"``.
    """
    matches = list(_NUMBER.finditer(_clean_latex(text)))
    if not matches:
        return None
    return matches[-1].group(0).strip()


def extract_answer(text: str) -> str | None:
    """Return the final answer of a response as written, or None when there is none.

    Tries a ``\\boxed{}`` answer, a stated answer ("The answer is ..."), a
    ``####`` marker and the last number, in that order.
    """
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    stated = extract_stated_answer(text)
    if stated:
        return stated
    marker = list(_MARKER.finditer(text))
    if marker and marker[-1].group("value").strip():
        return _trim_statement(marker[-1].group("value"))
    return extract_last_number(text)


def _plain_fraction(text: str) -> Fraction | None:
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    return Fraction(text)


def normalize_number(text: str) -> Fraction | None:
    """Read ``text`` as one exact number, or return None when it is not one number.

    Accepts a sign, ``$``, thousands commas, decimals, ``a/b`` and
    ``\\frac{a}{b}`` fractions, a trailing ``%``, a trailing period and
    ``\\text{...}`` units. ``"1,5"`` (not a thousands grouping) and ``"3/0"``
    return None.

    Examples:
      >>> normalize_number("$1,234.50")
      Fraction(2469, 2)
      >>> normalize_number("\\\\frac{3}{4}")
      Fraction(3, 4)
    """
    value = _clean_latex(text)
    value = _LATEX_TEXT.sub("", value)
    value = value.replace("^\\circ", "").replace("^{\\circ}", "")
    value = value.strip().rstrip(".").strip()
    value = value.replace("$", "").replace("%", "").strip()
    value = re.sub(r"\s*/\s*", "/", value)
    value = re.sub(r"^([-+])\s+", r"\1", value)
    if re.search(r"\s", value):
        return None
    sign = ""
    if value and value[0] in "+-":
        sign, value = value[0], value[1:]
    if "," in value:
        numerator_part = value.split("/")[0]
        if not _THOUSANDS.fullmatch(numerator_part):
            return None
        value = value.replace(",", "")

    numerator, _, denominator = value.partition("/")
    top = _plain_fraction(sign + numerator)
    if top is None:
        return None
    if not denominator:
        return top
    bottom = _plain_fraction(denominator)
    if bottom is None or bottom == 0:
        return None
    return top / bottom


def _format_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def _normalize_text(text: str) -> str:
    value = _LATEX_TEXT.sub(r"\g<content>", _clean_latex(text))
    value = re.sub(r"\s+", "", value).rstrip(".")
    return value.lower()


def canonical_answer(text: str) -> str:
    """Return the canonical form of an answer string, for comparison and voting.

    A number becomes its reduced fraction (``"1,000.0"`` -> ``"1000"``,
    ``"0.75"`` -> ``"3/4"``). ``"x = 5"`` is read as ``"5"``. An answer such as
    ``"18 dollars"`` that is not one number but starts with one reads as that
    number. Any other text is lowercased with spaces and a final period
    removed.
    """
    value = text.strip()
    if "####" in value:
        value = value.rsplit("####", 1)[1].strip()
    assignment = _ASSIGNMENT.match(value)
    if assignment and normalize_number(assignment.group("value")) is not None:
        value = assignment.group("value")

    number = normalize_number(value)
    if number is not None:
        return _format_fraction(number)

    leading = _NUMBER.match(_clean_latex(value).lstrip())
    if leading is not None:
        number = normalize_number(leading.group(0))
        if number is not None:
            return _format_fraction(number)
    return _normalize_text(value)


def parse_answer(response: str) -> str | None:
    """Return the canonical final answer of a response, or None when it states none."""
    answer = extract_answer(response)
    if answer is None:
        return None
    canonical = canonical_answer(answer)
    return canonical or None
