"""The linear-time text steps agree with the published reward's regular expressions."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onethinker.rewards import parsing as P

SETTINGS = settings(
    max_examples=800,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text rich in tag pieces and whitespace of every kind, so the interesting cases are common.
_PIECES = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "<",
        ">",
        "/",
        " ",
        "\n",
        "\t",
        "\x0b",
        "\u2003",
        "\x1c",
        "a",
        "B",
        "{",
        "}",
        "0",
        "\0",
        "think",
        "answer",
        "  ",
    ]
)
tag_text = st.lists(st.one_of(_PIECES, st.text(max_size=3)), max_size=30).map("".join)


@SETTINGS
@given(tag_text)
def test_normalize_matches_regex(text: str) -> None:
    assert P.normalize(text) == P.normalize_reference(text)


@SETTINGS
@given(tag_text)
def test_format_and_extraction_match_regex(text: str) -> None:
    norm = P.normalize_reference(text)
    assert P.has_format(norm) == P.has_format_reference(norm)
    assert P.extract_answer(norm) == P.extract_answer_reference(norm)
    assert P.has_format(text) == P.has_format_reference(text)  # also on raw, unnormalised text
    assert P.extract_answer(text) == P.extract_answer_reference(text)


def test_normalize_examples() -> None:
    assert P.normalize("< think >\n hi \n< / think >") == "<think>hi</think>"
    assert P.normalize("a / b and c < d") == "a/b and c<d"
    assert P.normalize("no tags here ") == "no tags here "
    assert P.normalize(" " * 10_000 + "x") == " " * 10_000 + "x"  # long runs stay linear


def test_format_examples() -> None:
    assert P.has_format("<think>x</think><answer>y</answer>")
    assert P.has_format("\n <think></think>\n<answer></answer> \n")
    assert P.has_format("<think>a</think><answer>b</answer><think>c</think><answer>d</answer>")
    assert not P.has_format("<answer>y</answer>")
    assert not P.has_format("<think>x</think><answer>y</answer> tail")
    assert not P.has_format("<think>x</think>text<answer>y</answer>")
    assert not P.has_format("<think></think><answer>")


def test_extract_examples() -> None:
    assert P.extract_answer("<answer>  B </answer><answer>C</answer>") == "B"
    assert P.extract_answer("<answer>B") is None
    assert P.extract_answer("</answer><answer>B</answer>") == "B"
    assert P.extract_answer("<answer><answer>x</answer>") == "<answer>x"


def test_numbers() -> None:
    assert P.numbers([1, "2", True, 4.5], 4) == (1.0, 2.0, 1.0, 4.5)  # float() accepts them all
    assert P.numbers([1, 2, 3], 4) is None
    assert P.numbers([1, None, 3, 4], 4) is None
    assert P.numbers((1, 2), 2) is None  # a JSON list is required
    assert P.numbers([10**400, 0], 2) is None  # float() overflows
    assert P.finite_numbers([1, "nan"], 2) is None
    assert P.to_number("1,234.5") == 1234.5
    assert P.to_number("twelve") is None
    assert P.points3([[0, 0], [1, 1], ["2", 2]]) == ((0.0, 0.0), (1.0, 1.0), (2.0, 2.0))
    assert P.points3([[0, 0], [1, 1]]) is None


def test_parse_json_never_raises() -> None:
    assert P.parse_json("[" * 100_000) is P.UNPARSEABLE  # RecursionError inside json
    assert P.parse_json("1" * 5000) is P.UNPARSEABLE  # int digit limit
    assert P.parse_json("null") is None
    assert P.object_reason(None) == P.NOT_AN_OBJECT
    assert P.object_reason(P.UNPARSEABLE) == P.JSON_UNPARSEABLE
