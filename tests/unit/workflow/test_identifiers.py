"""Tests for workflow.identifiers: published samples, check-character properties, masking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflow.identifiers import (
    CREDIT_CODE_ALPHABET,
    IdentifierError,
    ItemCode,
    build_item_code,
    build_tracking_number,
    citizen_id_birth_date,
    citizen_id_check_char,
    citizen_id_gender,
    credit_code_check_char,
    is_valid_citizen_id,
    is_valid_credit_code,
    is_valid_organisation_code,
    mask_applicant_name,
    mask_id_number,
    mask_identifier,
    mask_name,
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

TODAY = date(2025, 6, 30)
DIGITS = "0123456789"
UPPER_ALNUM = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MOD11_CHECKS = DIGITS + "X"
PUBLISHED_CREDIT_CODES = ["91110000600037341L", "91110108551385082Q", "91420684MA4927PJ7B"]


def digit_strings(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=DIGITS, min_size=size, max_size=size)


def single_substitutions(code: str, allowed_at: Callable[[int], str]) -> st.SearchStrategy[str]:
    """Codes that differ from ``code`` in exactly one position, using an allowed character."""

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        position = draw(st.integers(0, len(code) - 1))
        others = [ch for ch in allowed_at(position) if ch != code[position]]
        replacement = draw(st.sampled_from(others))
        return code[:position] + replacement + code[position + 1 :]

    return mutate()


def rule_of(call: Callable[[], object]) -> str:
    with pytest.raises(IdentifierError) as info:
        call()
    return info.value.rule


# --- citizen ID ----------------------------------------------------------------------------------


@st.composite
def citizen_ids(draw: st.DrawFn) -> str:
    region = draw(digit_strings(6))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=TODAY))
    sequence = draw(digit_strings(3))
    first17 = f"{region}{born:%Y%m%d}{sequence}"
    return first17 + citizen_id_check_char(first17)


def citizen_allowed(position: int) -> str:
    return MOD11_CHECKS if position == 17 else DIGITS


def test_well_known_citizen_id_sample_computes_its_check_character() -> None:
    assert citizen_id_check_char("11010519491231002") == "X"
    assert validate_citizen_id("11010519491231002X", today=TODAY) == "11010519491231002X"


def test_constructed_shenyang_citizen_id_is_valid() -> None:
    first17 = "21010219900307123"
    number = first17 + citizen_id_check_char(first17)
    assert number == "210102199003071233"
    assert is_valid_citizen_id(number, today=TODAY)


def test_citizen_id_lowercase_x_and_spaces_are_normalised() -> None:
    assert validate_citizen_id(" 11010519491231002x ", today=TODAY) == "11010519491231002X"


def test_legacy_15_digit_citizen_id_is_returned_in_18_digit_form() -> None:
    upgraded = validate_citizen_id("130503670401001", today=TODAY)
    assert upgraded == "130503196704010016"
    assert citizen_id_birth_date("130503670401001", today=TODAY) == date(1967, 4, 1)


def test_citizen_id_gender_follows_parity_of_sequence_digit() -> None:
    female = "11010519491231002X"
    male_body = "21010219900307123"
    assert citizen_id_gender(female, today=TODAY) == "female"
    assert citizen_id_gender(male_body + citizen_id_check_char(male_body), today=TODAY) == "male"


def test_citizen_id_birth_date_is_extracted() -> None:
    assert citizen_id_birth_date("11010519491231002X", today=TODAY) == date(1949, 12, 31)


@pytest.mark.parametrize(
    ("birth", "why"),
    [("19900230", "impossible date"), ("18991231", "before 1900"), ("20250701", "future")],
)
def test_citizen_id_with_bad_birth_date_is_rejected(birth: str, why: str) -> None:
    first17 = f"210102{birth}123"
    number = first17 + citizen_id_check_char(first17)
    assert rule_of(lambda: validate_citizen_id(number, today=TODAY)) == "birth_date", why


def test_citizen_id_unknown_region_prefix_is_accepted() -> None:
    first17 = "99999919900307123"
    assert is_valid_citizen_id(first17 + citizen_id_check_char(first17), today=TODAY)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("11010519491231002", "length"),
        ("1101051949123100２X", "charset"),  # full-width digit
        ("1101051949123100X2", "charset"),
        ("110105194912310021", "check_character"),
    ],
)
def test_malformed_citizen_id_reports_rule(value: str, rule: str) -> None:
    assert rule_of(lambda: validate_citizen_id(value, today=TODAY)) == rule


def test_citizen_id_error_message_is_bilingual_and_does_not_echo_value() -> None:
    with pytest.raises(IdentifierError) as info:
        validate_citizen_id("110105194912310021", today=TODAY)
    assert str(info.value) == "身份证号码校验位错误 (check character mismatch)"
    assert isinstance(info.value, ValueError)


def test_is_valid_citizen_id_returns_false_for_non_string() -> None:
    assert not is_valid_citizen_id(None, today=TODAY)  # type: ignore[arg-type]


@given(citizen_ids())
def test_generated_citizen_id_passes(number: str) -> None:
    assert validate_citizen_id(number, today=TODAY) == number


@given(citizen_ids().flatmap(lambda n: single_substitutions(n, citizen_allowed)))
def test_citizen_id_single_character_change_fails(mutated: str) -> None:
    assert not is_valid_citizen_id(mutated, today=TODAY)


@given(digit_strings(17))
def test_mod11_2_matches_citizen_id_check_for_17_digits(first17: str) -> None:
    assert mod11_2_check_char(first17) == citizen_id_check_char(first17)


# --- ISO 7064 MOD 11-2 ------------------------------------------------------------------------


def test_mod11_2_matches_iso_7064_example() -> None:
    # ISO 7064 annex example: 0794 → check 0.
    assert mod11_2_check_char("0794") == "0"


@given(st.text(alphabet=DIGITS, min_size=1, max_size=40))
def test_mod11_2_check_makes_weighted_sum_congruent_to_one(digits: str) -> None:
    check = mod11_2_check_char(digits)
    n = len(digits)
    total = sum(int(d) * pow(2, n - i, 11) for i, d in enumerate(digits))
    assert (total + (10 if check == "X" else int(check))) % 11 == 1


@pytest.mark.parametrize(("value", "rule"), [("", "length"), ("12a4", "charset")])
def test_mod11_2_rejects_bad_input(value: str, rule: str) -> None:
    assert rule_of(lambda: mod11_2_check_char(value)) == rule


# --- unified social credit code ------------------------------------------------------------------


@st.composite
def credit_codes(draw: st.DrawFn) -> str:
    head = draw(st.text(alphabet=CREDIT_CODE_ALPHABET, min_size=8, max_size=8))
    # The organisation-code body uses the credit alphabet (a subset of GB 11714's).
    org_body = draw(st.text(alphabet=CREDIT_CODE_ALPHABET, min_size=8, max_size=8))
    first17 = head + org_body + organisation_code_check_char(org_body)
    return first17 + credit_code_check_char(first17)


@pytest.mark.parametrize("code", PUBLISHED_CREDIT_CODES)
def test_published_credit_codes_pass(code: str) -> None:
    assert validate_credit_code(code) == code
    assert credit_code_check_char(code[:17]) == code[17]


@pytest.mark.parametrize("code", PUBLISHED_CREDIT_CODES)
def test_published_credit_codes_embed_valid_organisation_codes(code: str) -> None:
    assert is_valid_organisation_code(code[8:17])


def test_credit_code_is_uppercased() -> None:
    assert validate_credit_code("91420684ma4927pj7b") == "91420684MA4927PJ7B"


def test_credit_code_with_bad_organisation_part_is_rejected_even_if_check_matches() -> None:
    first17 = "9111000060003734" + "2"  # organisation check should be 1
    code = first17 + credit_code_check_char(first17)
    assert rule_of(lambda: validate_credit_code(code)) == "organisation_code"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("91110000600037341", "length"),
        ("91110000600O37341L", "charset"),  # letter O is not in the GB 32100 alphabet
        ("91110000600037341M", "check_character"),
    ],
)
def test_malformed_credit_code_reports_rule(value: str, rule: str) -> None:
    assert rule_of(lambda: validate_credit_code(value)) == rule


@given(credit_codes())
def test_generated_credit_code_passes(code: str) -> None:
    assert validate_credit_code(code) == code


@given(credit_codes().flatmap(lambda c: single_substitutions(c, lambda _: CREDIT_CODE_ALPHABET)))
def test_credit_code_single_character_change_fails(mutated: str) -> None:
    assert not is_valid_credit_code(mutated)


# --- organisation code ---------------------------------------------------------------------------


@st.composite
def organisation_codes(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet=UPPER_ALNUM, min_size=8, max_size=8))
    return body + organisation_code_check_char(body)


def test_organisation_code_check_maps_ten_to_x_and_eleven_to_zero() -> None:
    # Bodies chosen so that S % 11 is 1 (C = 10) and 0 (C = 11).
    assert organisation_code_check_char("40000000") == "X"  # S = 12
    assert organisation_code_check_char("00000000") == "0"  # S = 0


def test_organisation_code_accepts_hyphenated_and_plain_forms() -> None:
    assert validate_organisation_code("60003734-1") == "60003734-1"
    assert validate_organisation_code("ma4927pj7") == "MA4927PJ-7"


@pytest.mark.parametrize(
    ("value", "rule"),
    [("6000373-41", "length"), ("6000373_1", "charset"), ("60003734-2", "check_character")],
)
def test_malformed_organisation_code_reports_rule(value: str, rule: str) -> None:
    assert rule_of(lambda: validate_organisation_code(value)) == rule


@given(organisation_codes())
def test_generated_organisation_code_passes(code: str) -> None:
    assert validate_organisation_code(code) == f"{code[:8]}-{code[8]}"


@given(organisation_codes().flatmap(lambda c: st.tuples(st.just(c), st.integers(0, 8))))
def test_organisation_code_single_character_change_fails_unless_value_differs_by_11(
    case: tuple[str, int],
) -> None:
    code, position = case
    allowed = MOD11_CHECKS if position == 8 else UPPER_ALNUM
    for replacement in allowed:
        if replacement == code[position]:
            continue
        mutated = code[:position] + replacement + code[position + 1 :]
        delta = UPPER_ALNUM.index(replacement) - UPPER_ALNUM.index(code[position])
        # GB 11714 works modulo 11 over values 0–35, so e.g. 0 ↔ B goes unnoticed (documented).
        assert is_valid_organisation_code(mutated) == (position < 8 and delta % 11 == 0)


def test_organisation_code_does_not_detect_substitution_by_eleven() -> None:
    assert is_valid_organisation_code("60003734-1")
    assert is_valid_organisation_code("6B003734-1")  # '0' (0) → 'B' (11)


# --- province item code --------------------------------------------------------------------------


@st.composite
def item_codes(draw: st.DrawFn) -> ItemCode:
    return build_item_code(
        draw(digit_strings(6)),
        draw(digit_strings(3)),
        draw(digit_strings(2)),
        draw(digit_strings(3)),
        draw(digit_strings(3)),
    )


def test_shenyang_item_code_example_from_the_coding_scheme_doc() -> None:
    code = build_item_code("210100", "005", "01", "023", "001")
    assert code.value == "210100005010230019"
    assert str(code) == code.value
    assert parse_item_code("210100005010230019") == code


def test_item_code_sub_item_defaults_to_none() -> None:
    assert build_item_code("210100", "005", "01", "023").sub_item == "000"


@given(item_codes())
def test_item_code_round_trips_through_parse(code: ItemCode) -> None:
    assert parse_item_code(code.value) == code
    assert len(code.value) == 18


@given(item_codes().flatmap(lambda c: single_substitutions(c.value, citizen_allowed)))
def test_item_code_single_character_change_fails(mutated: str) -> None:
    assert rule_of(lambda: parse_item_code(mutated)) == "check_character"


@pytest.mark.parametrize(
    ("parts", "rule"),
    [
        (("21010", "005", "01", "023", "001"), "length"),
        (("210100", "0a5", "01", "023", "001"), "charset"),
        (("210100", "005", "1", "023", "001"), "length"),
    ],
)
def test_item_code_parts_are_validated(parts: tuple[str, ...], rule: str) -> None:
    assert rule_of(lambda: build_item_code(*parts)) == rule


def test_item_code_cannot_be_constructed_invalid_directly() -> None:
    assert rule_of(lambda: ItemCode("210100", "005", "01", "023", "01")) == "length"


@pytest.mark.parametrize(
    ("value", "rule"), [("21010000501023001", "length"), ("2101000050102300A9", "charset")]
)
def test_malformed_item_code_reports_rule(value: str, rule: str) -> None:
    assert rule_of(lambda: parse_item_code(value)) == rule


def test_national_basic_code_is_normalised_to_uppercase() -> None:
    assert validate_national_basic_code("11a000000001") == "11A000000001"


@pytest.mark.parametrize(
    ("value", "rule"),
    [("11A00000000", "length"), ("11A00000000-", "charset"), ("11A00000000事", "charset")],
)
def test_malformed_national_basic_code_reports_rule(value: str, rule: str) -> None:
    assert rule_of(lambda: validate_national_basic_code(value)) == rule


# --- tracking number -----------------------------------------------------------------------------


tracking_parts = st.tuples(
    digit_strings(6), st.dates(min_value=date(2000, 1, 1)), st.integers(0, 999_999)
)


def test_tracking_number_layout() -> None:
    number = build_tracking_number("210102", date(2025, 3, 7), 42)
    assert number[:20] == "21010220250307000042"
    assert number[20] == mod11_2_check_char(number[:20])
    assert len(number) == 21


@given(tracking_parts)
def test_tracking_number_round_trips(parts: tuple[str, date, int]) -> None:
    assert parse_tracking_number(build_tracking_number(*parts)) == parts


@given(
    tracking_parts.flatmap(
        lambda p: single_substitutions(
            build_tracking_number(*p), lambda i: MOD11_CHECKS if i == 20 else DIGITS
        )
    )
)
def test_tracking_number_single_character_change_fails(mutated: str) -> None:
    with pytest.raises(IdentifierError):
        parse_tracking_number(mutated)


@pytest.mark.parametrize("sequence", [-1, 1_000_000])
def test_tracking_number_sequence_out_of_range_is_rejected(sequence: int) -> None:
    assert rule_of(lambda: build_tracking_number("210102", TODAY, sequence)) == "sequence"


def test_tracking_number_with_impossible_date_but_right_check_is_rejected() -> None:
    body = "21010220250230000042"
    assert rule_of(lambda: parse_tracking_number(body + mod11_2_check_char(body))) == "date"


def test_tracking_number_region_must_be_six_digits() -> None:
    assert rule_of(lambda: build_tracking_number("2101", TODAY, 1)) == "length"


# --- masking -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "masked"), [("张三", "张*"), ("欧阳娜娜", "欧***"), ("李", "*"), ("", "")]
)
def test_mask_name_keeps_first_character_only(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_applicant_name_masks_natural_persons_only() -> None:
    assert mask_applicant_name("张三", "1") == "张*"
    assert mask_applicant_name("张三", 1) == "张*"
    assert mask_applicant_name("沈阳某某科技有限公司", "2") == "沈阳某某科技有限公司"


def test_mask_id_number_keeps_region_and_last_four() -> None:
    assert mask_id_number("21010219900307123X") == "210102********123X"


def test_mask_id_number_hides_most_of_a_short_document_number() -> None:
    assert mask_id_number("E12345678") == "E*******8"


def test_mask_identifier_keeps_credit_codes_public() -> None:
    assert mask_identifier("91110000600037341L", "2") == "91110000600037341L"
    assert mask_identifier("21010219900307123X", "1") == "210102********123X"


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138-1234-5678", "+86 138-****-5678"),
        ("024-23456789", "024-****6789"),
        ("23456789", "****6789"),
        ("12345", "*****"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked
