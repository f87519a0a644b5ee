"""Identifier errors as people read them: each rule's scheme, rule name and exact bilingual message, the
position (never the character) of a bad character, the successful paths and the masking of public
disclosure, pinned at their boundaries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from workflow.identifiers import (
    IdentifierError,
    build_item_code,
    build_tracking_number,
    citizen_id_birth_date,
    citizen_id_check_char,
    citizen_id_gender,
    credit_code_check_char,
    is_valid_citizen_id,
    is_valid_credit_code,
    is_valid_organisation_code,
    mask_id_number,
    mask_phone,
    mod11_2_check_char,
    organisation_code_check_char,
    parse_item_code,
    parse_tracking_number,
    validate_citizen_id,
    validate_credit_code,
    validate_national_basic_code,
    validate_organisation_code,
)

DAY = date(2026, 11, 30)
MALE = "210102199001011237"
FEMALE = "210102199001011245"


@pytest.mark.parametrize(
    ("call", "scheme", "rule", "message"),
    [
        (lambda: mod11_2_check_char(''), 'mod11_2', 'length',
         'MOD 11-2 校验对象长度错误 (wrong length: expected at least 1 digit)'),
        (lambda: mod11_2_check_char(5), 'mod11_2', 'type', 'MOD 11-2 校验对象类型错误 (value is not a string)'),
        (lambda: mod11_2_check_char('12a4'), 'mod11_2', 'charset',
         'MOD 11-2 校验对象含有非法字符 (character not allowed: position 3)'),
        (lambda: citizen_id_check_char('1234'), 'citizen_id', 'length',
         '身份证号码长度错误 (wrong length: expected 17 characters, got 4)'),
        (lambda: citizen_id_check_char('2101021990010112A'), 'citizen_id', 'charset',
         '身份证号码含有非法字符 (character not allowed: position 17)'),
        (lambda: validate_citizen_id('21010219900101123'), 'citizen_id', 'length',
         '身份证号码长度错误 (wrong length: expected 15 or 18 characters, got 17)'),
        (lambda: validate_citizen_id('21010290010112A'), 'citizen_id', 'charset',
         '身份证号码含有非法字符 (character not allowed: position 15)'),
        (lambda: validate_citizen_id('210102199002301234', today=DAY), 'citizen_id', 'birth_date',
         '身份证号码出生日期无效 (invalid birth date: not a calendar date)'),
        (lambda: validate_citizen_id('210102189901011234', today=DAY), 'citizen_id', 'birth_date',
         '身份证号码出生日期无效 (invalid birth date: before 1900)'),
        (lambda: validate_citizen_id('210102202701011234'), 'citizen_id', 'birth_date',
         '身份证号码出生日期无效 (invalid birth date: in the future)'),
        (lambda: validate_citizen_id('210102199001011230', today=DAY), 'citizen_id', 'check_character',
         '身份证号码校验位错误 (check character mismatch)'),
        (lambda: organisation_code_check_char('1234'), 'organisation_code', 'length',
         '组织机构代码长度错误 (wrong length: expected 8 characters, got 4)'),
        (lambda: organisation_code_check_char('1234567*'), 'organisation_code', 'charset',
         '组织机构代码含有非法字符 (character not allowed: position 8)'),
        (lambda: validate_organisation_code('12345678-1'), 'organisation_code', 'check_character',
         '组织机构代码校验位错误 (check character mismatch)'),
        (lambda: credit_code_check_char('12'), 'credit_code', 'length',
         '统一社会信用代码长度错误 (wrong length: expected 17 characters, got 2)'),
        (lambda: credit_code_check_char('9111000060003734I'), 'credit_code', 'charset',
         '统一社会信用代码含有非法字符 (character not allowed: position 17)'),
        (lambda: validate_credit_code('91110000600037341A'), 'credit_code', 'check_character',
         '统一社会信用代码校验位错误 (check character mismatch)'),
        (lambda: parse_item_code('12'), 'item_code', 'length',
         '事项编码长度错误 (wrong length: expected 18 characters, got 2)'),
        (lambda: parse_item_code('2101000010100A0000'), 'item_code', 'charset',
         '事项编码含有非法字符 (character not allowed: position 14)'),
        (lambda: parse_item_code('210100001010000000'), 'item_code', 'check_character',
         '事项编码校验位错误 (check character mismatch)'),
        (lambda: build_item_code('21010', '001', '01', '001'), 'item_code', 'length',
         '事项编码长度错误 (wrong length: region must have 6 digits)'),
        (lambda: build_item_code('210100', 1, '01', '001'), 'item_code', 'type',
         '事项编码类型错误 (value is not a string: department)'),
        (lambda: build_item_code('210100', '00a', '01', '001'), 'item_code', 'charset',
         '事项编码含有非法字符 (character not allowed: department must be digits)'),
        (lambda: validate_national_basic_code('abc'), 'national_basic_code', 'length',
         '基本编码长度错误 (wrong length: expected 12 characters, got 3)'),
        (lambda: validate_national_basic_code('ABCDEFGHIJK-'), 'national_basic_code', 'charset',
         '基本编码含有非法字符 (character not allowed: position 12)'),
        (lambda: build_tracking_number(210100, DAY, 1), 'tracking_number', 'type',
         '办件编号类型错误 (value is not a string: region)'),
        (lambda: build_tracking_number('21010', DAY, 1), 'tracking_number', 'length',
         '办件编号长度错误 (wrong length: region must have 6 digits)'),
        (lambda: build_tracking_number('21010a', DAY, 1), 'tracking_number', 'charset',
         '办件编号含有非法字符 (character not allowed: position 6)'),
        (lambda: build_tracking_number('210100', DAY, 1000000), 'tracking_number', 'sequence',
         '办件编号序号超出范围 (sequence out of range: must be 0–999999)'),
        (lambda: build_tracking_number('210100', DAY, -1), 'tracking_number', 'sequence',
         '办件编号序号超出范围 (sequence out of range: must be 0–999999)'),
        (lambda: parse_tracking_number('1'), 'tracking_number', 'length',
         '办件编号长度错误 (wrong length: expected 21 characters, got 1)'),
        (lambda: parse_tracking_number('2101002026113000000A1'), 'tracking_number', 'charset',
         '办件编号含有非法字符 (character not allowed: position 20)'),
        (lambda: validate_organisation_code(5), "organisation_code", "type",
         "组织机构代码类型错误 (value is not a string)"),
        # The check character is checked on its own: its position is counted within it.
        (lambda: validate_organisation_code("12345678*"), "organisation_code", "charset",
         "组织机构代码含有非法字符 (character not allowed: position 1)"),
        (lambda: parse_tracking_number(5), "tracking_number", "type", "办件编号类型错误 (value is not a string)"),
        (lambda: parse_tracking_number("21010020261130000042*"), "tracking_number", "charset",
         "办件编号含有非法字符 (character not allowed: position 1)"),
        (lambda: validate_national_basic_code(5), "national_basic_code", "type",
         "基本编码类型错误 (value is not a string)"),
        (lambda: parse_tracking_number("210100202613010000015"), "tracking_number", "date",
         "办件编号日期无效 (invalid date: not a calendar date)"),
    ],
)
def test_identifier_errors_name_scheme_rule_and_detail(
    call: Callable[[], object], scheme: str, rule: str, message: str
) -> None:
    with pytest.raises(IdentifierError) as raised:
        call()
    assert (raised.value.scheme, raised.value.rule, str(raised.value)) == (scheme, rule, message)


def test_identifier_error_defaults() -> None:
    error = IdentifierError("r", "m")
    assert (error.rule, error.scheme, str(error)) == ("r", "", "m")


def test_citizen_id_facts() -> None:
    assert (citizen_id_gender(MALE), citizen_id_gender(FEMALE)) == ("male", "female")
    assert citizen_id_birth_date(MALE, today=DAY) == date(1990, 1, 1)
    assert validate_citizen_id("210102900101123", today=DAY) == MALE
    assert is_valid_citizen_id(MALE, today=DAY)
    # ``today`` bounds the birth date: born after it, the number is not valid yet.
    before_birth = date(1989, 12, 31)
    assert not is_valid_citizen_id(MALE, today=before_birth)
    for call in (citizen_id_gender, citizen_id_birth_date):
        with pytest.raises(IdentifierError) as raised:
            call(MALE, today=before_birth)
        assert raised.value.rule == "birth_date"


def test_codes_and_numbers_round_trip() -> None:
    assert (is_valid_credit_code("91110000600037341L"), is_valid_credit_code("91110000600037341A")) == (True, False)
    assert is_valid_organisation_code("60003734-1")
    assert validate_national_basic_code(" abcdefghijk1 ") == "ABCDEFGHIJK1"
    code = build_item_code("210100", "001", "01", "001")
    assert (code.body, code.check_char, code.value, str(code)) == (
        "21010000101001000", "X", "21010000101001000X", "21010000101001000X"
    )
    assert parse_item_code(code.value.lower()) == code
    number = build_tracking_number("210100", DAY, 42)
    assert number == "210100202611300000428"
    assert parse_tracking_number(number) == ("210100", DAY, 42)
    assert build_tracking_number("210100", DAY, 0).startswith("21010020261130000000")
    assert build_tracking_number("210100", DAY, 999_999)[14:20] == "999999"
    assert (mod11_2_check_char("1"), mod11_2_check_char("0")) == ("X", "1")
    assert mod11_2_check_char("21010219900101123") == citizen_id_check_char("21010219900101123") == "7"
    assert organisation_code_check_char("60003734") == "1"
    assert credit_code_check_char("91110000600037341") == "L"
    assert validate_credit_code(" 91110000600037341l ") == "91110000600037341L"
    assert validate_organisation_code("600037341") == "60003734-1"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("210102199001011234", "210102********1234"),
        ("21010219900101123X", "210102********123X"),
        ("210102900101123", "210102*****1123"),
        ("E12345678", "E*******8"),
        ("ABC", "A*C"),
        ("AB", "**"),
        ("", ""),
    ],
)
def test_id_numbers_are_masked_by_length(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138-1234-5678", "+86 138-****-5678"),
        ("0086-13812345678", "0086-138****5678"),
        ("1381234567", "******4567"),
        ("024-2345678", "***-***5678"),
        ("1234567", "***4567"),
        ("123456", "******"),
        ("12345", "*****"),
    ],
)
def test_phones_are_masked_by_digit_count(value: str, masked: str) -> None:
    assert mask_phone(value) == masked
