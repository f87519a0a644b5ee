"""Edges of workflow/identifiers.py that mutation testing found unpinned (docs/mutation-testing.md): the scheme an
error names when the input is not text or its check character is no character of the scheme — what the API
turns into the field of a 422 — and the two ends of the birth dates a citizen ID may carry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest

from workflow.identifiers import (
    IdentifierError,
    citizen_id_check_char,
    credit_code_check_char,
    organisation_code_check_char,
    parse_item_code,
    validate_citizen_id,
    validate_credit_code,
)

TODAY = date(2026, 11, 30)


def citizen_id(born: date, region: str = "210102", sequence: str = "001") -> str:
    first17 = f"{region}{born:%Y%m%d}{sequence}"
    return first17 + citizen_id_check_char(first17)


@pytest.mark.parametrize(("check", "scheme", "name"), [
    (citizen_id_check_char, "citizen_id", "身份证号码"),
    (validate_citizen_id, "citizen_id", "身份证号码"),
    (organisation_code_check_char, "organisation_code", "组织机构代码"),
    (credit_code_check_char, "credit_code", "统一社会信用代码"),
    (validate_credit_code, "credit_code", "统一社会信用代码"),
    (parse_item_code, "item_code", "事项编码"),
])
def test_a_value_that_is_not_text_is_refused_naming_its_scheme(check: Callable[[object], object], scheme: str,
                                                               name: str) -> None:
    for value in (None, 21010219491231002, b"210102194912310021"):
        with pytest.raises(IdentifierError) as raised:
            check(value)
        assert (raised.value.rule, raised.value.scheme) == ("type", scheme)
        assert str(raised.value).startswith(f"{name}类型错误")


@pytest.mark.parametrize(("check", "value", "scheme"), [
    (validate_citizen_id, "21010219491231002Y", "citizen_id"),
    (validate_citizen_id, "21010219491231002-", "citizen_id"),
    (parse_item_code, "21010000501023001Y", "item_code"),
])
def test_a_check_character_outside_the_scheme_is_refused_naming_the_scheme(
        check: Callable[[str], object], value: str, scheme: str) -> None:
    with pytest.raises(IdentifierError) as raised:
        check(value)
    assert (raised.value.rule, raised.value.scheme) == ("charset", scheme)


def test_the_earliest_birth_date_a_citizen_id_may_carry_is_1900_01_01() -> None:
    assert validate_citizen_id(citizen_id(date(1900, 1, 1)), today=TODAY)
    with pytest.raises(IdentifierError) as raised:
        validate_citizen_id(citizen_id(date(1899, 12, 31)), today=TODAY)
    assert (raised.value.rule, raised.value.scheme) == ("birth_date", "citizen_id")
    assert "before 1900" in str(raised.value)


def test_a_citizen_born_today_has_a_valid_number_and_tomorrow_is_in_the_future() -> None:
    assert validate_citizen_id(citizen_id(TODAY), today=TODAY)
    with pytest.raises(IdentifierError) as raised:
        validate_citizen_id(citizen_id(TODAY + timedelta(days=1)), today=TODAY)
    assert raised.value.rule == "birth_date"
    assert "in the future" in str(raised.value)
