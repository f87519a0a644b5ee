"""The one text normaliser: what it keeps, what it strips, and the rule each refusal names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.text import TextRuleViolation, normalize_name, normalize_text, xml_safe


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("张晓明", "张晓明"),
        ("  张晓明\u3000", "张晓明"),  # ideographic space padding
        ("\ufeff李四", "李四"),  # a BOM pasted from a file
        ("\u200b王五\u200b", "王五"),
        ("阿依古丽·买买提", "阿依古丽·买买提"),  # the middle dot of minority names is kept
        ("Cafe\u0301", "Café"),  # NFC
    ],
)
def test_names_are_normalised(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("", "not_blank"),
        ("   ", "not_blank"),
        ("\u200b", "not_blank"),
        ("\ufeff", "not_blank"),
        ("\u3000\u3000", "not_blank"),
        ("张\x01三", "no_control_characters"),
        ("张\x85三", "no_control_characters"),  # NEL, a C1 control
        ("张\x7f三", "no_control_characters"),
        ("张\ufffe三", "valid_characters"),
        ("张\uffff三", "valid_characters"),
        ("张\ufdd0三", "valid_characters"),
        ("张\n三", "no_control_characters"),  # names are one line
        ("张\u2028三", "single_line"),
        ("张\u200b三", "no_invisible_characters"),
        ("张\u202e三", "no_invisible_characters"),  # a right-to-left override inside a name
    ],
)
def test_names_refused_with_their_rule(raw: str, rule: str) -> None:
    with pytest.raises(TextRuleViolation) as caught:
        normalize_name(raw)
    assert caught.value.rule == rule
    assert caught.value.message  # a Chinese message for the applicant


def test_name_longer_than_limit_is_refused() -> None:
    assert normalize_name("名" * 128) == "名" * 128
    with pytest.raises(TextRuleViolation) as caught:
        normalize_name("名" * 129)
    assert caught.value.rule == "max_length"


def test_free_text_keeps_lines_and_tabs() -> None:
    assert normalize_text(" 第一行\n第二行\t完 \n") == "第一行\n第二行\t完"


def test_free_text_may_be_blank_only_when_allowed() -> None:
    assert normalize_text(" \u200b ", allow_blank=True) == ""
    with pytest.raises(TextRuleViolation) as caught:
        normalize_text(" \u200b ")
    assert caught.value.rule == "not_blank"


def test_single_line_text_joins_lines() -> None:
    with pytest.raises(TextRuleViolation) as caught:
        normalize_text("a\nb", allow_newlines=False)
    assert caught.value.rule == "no_control_characters"


@given(st.text())
def test_whatever_is_accepted_can_be_written_to_xml(raw: str) -> None:
    try:
        text = normalize_text(raw)
    except TextRuleViolation:
        return
    assert xml_safe(text)
    assert text == text.strip()
    assert text


@given(st.text())
def test_accepted_names_have_no_invisible_or_control_characters(raw: str) -> None:
    try:
        name = normalize_name(raw)
    except TextRuleViolation:
        return
    assert xml_safe(name)
    assert "\n" not in name and "\u200b" not in name and "\ufeff" not in name


def test_xml_safe() -> None:
    assert xml_safe("张三\n\t\r")
    assert not xml_safe("a\x01")
    assert not xml_safe("a\ufffe")
    assert not xml_safe("a\ud800")
