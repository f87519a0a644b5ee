"""Identifiers the hub validates before it stores or forwards them.

National schemes (GB 11643 citizen ID, GB 32100 unified social credit code, GB 11714 organisation
code) and the hub's own schemes (province item code, tracking number), plus the masking used for
public disclosure. The layouts and check-character algorithms are explained in
``docs/coding-scheme.md``.

Pure functions only: no I/O, no clock reads except the documented ``today`` default, and no error
message ever echoes the value itself, because these values are personal data that must not leak into
logs or HTTP problem bodies.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = [
    "CREDIT_CODE_ALPHABET",
    "IdentifierError",
    "ItemCode",
    "build_item_code",
    "build_tracking_number",
    "citizen_id_birth_date",
    "citizen_id_check_char",
    "citizen_id_gender",
    "credit_code_check_char",
    "is_valid_citizen_id",
    "is_valid_credit_code",
    "is_valid_organisation_code",
    "mask_applicant_name",
    "mask_id_number",
    "mask_identifier",
    "mask_name",
    "mask_phone",
    "mod11_2_check_char",
    "organisation_code_check_char",
    "parse_item_code",
    "parse_tracking_number",
    "validate_citizen_id",
    "validate_credit_code",
    "validate_national_basic_code",
    "validate_organisation_code",
]

# Explicit character sets: str.isdigit()/isalnum() also accept full-width and superscript digits
# and CJK characters, which none of these schemes allow.
DIGITS = "0123456789"
UPPER_ALNUM = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# GB 32100 drops I, O, S, V, Z so they cannot be misread as 1, 0, 5, U, 2; value = index.
CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
MOD11_2_CHECK_CHARS = DIGITS + "X"

_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORGANISATION_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_EARLIEST_BIRTH_DATE = date(1900, 1, 1)

# Chinese names of the schemes and rules, so the message a clerk sees is in Chinese while
# developers and partner systems can still read the English part and switch on ``rule``.
_SCHEME_NAMES = {
    "citizen_id": "身份证号码",
    "credit_code": "统一社会信用代码",
    "organisation_code": "组织机构代码",
    "mod11_2": "MOD 11-2 校验对象",
    "item_code": "事项编码",
    "national_basic_code": "基本编码",
    "tracking_number": "办件编号",
}
_RULE_TEXTS = {
    "type": ("类型错误", "value is not a string"),
    "length": ("长度错误", "wrong length"),
    "charset": ("含有非法字符", "character not allowed"),
    "birth_date": ("出生日期无效", "invalid birth date"),
    "date": ("日期无效", "invalid date"),
    "sequence": ("序号超出范围", "sequence out of range"),
    "organisation_code": (
        "中的组织机构代码部分校验错误",
        "organisation code part fails the GB 11714 check",
    ),
    "check_character": ("校验位错误", "check character mismatch"),
}


class IdentifierError(ValueError):
    """An identifier broke a rule; ``rule`` is a short machine string, the message is bilingual."""

    def __init__(self, rule: str, message: str, *, scheme: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.scheme = scheme


def _fail(scheme: str, rule: str, detail: str = "") -> IdentifierError:
    zh, en = _RULE_TEXTS[rule]
    suffix = f": {detail}" if detail else ""
    return IdentifierError(rule, f"{_SCHEME_NAMES[scheme]}{zh} ({en}{suffix})", scheme=scheme)


def _normalise(value: object, scheme: str) -> str:
    # Form input arrives with stray spaces and a lowercase x; both are harmless to accept.
    if not isinstance(value, str):
        raise _fail(scheme, "type")
    return value.strip().upper()


def _require_length(value: str, lengths: tuple[int, ...], scheme: str) -> None:
    if len(value) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise _fail(scheme, "length", f"expected {expected} characters, got {len(value)}")


def _require_charset(value: str, allowed: str, scheme: str) -> None:
    position = next((i for i, ch in enumerate(value) if ch not in allowed), None)
    if position is not None:
        # Report the position, never the character: the value may be personal data.
        raise _fail(scheme, "charset", f"position {position + 1}")


def _require_check_char(actual: str, expected: str, scheme: str) -> None:
    if actual != expected:
        raise _fail(scheme, "check_character")


# --- ISO 7064 MOD 11-2 ---------------------------------------------------------------------------


def _mod11_2(digits: str) -> str:
    # ISO 7064 pure system: the digit n places left of the check character has weight 2**n mod 11,
    # and the check c makes (sum + c) ≡ 1 (mod 11); c = 10 is written X.
    total = sum(map(operator.mul, map(int, digits), _mod11_2_weights(len(digits))))
    return MOD11_2_CHECK_CHARS[(12 - total % 11) % 11]


@functools.cache
def _mod11_2_weights(n: int) -> tuple[int, ...]:
    # Per length, once: every submission computes two check characters (tracking number, citizen id).
    return tuple(pow(2, n - i, 11) for i in range(n))


def mod11_2_check_char(digits: str) -> str:
    """ISO 7064 MOD 11-2 check character ('0'–'9' or 'X') for a non-empty digit string."""
    value = _normalise(digits, "mod11_2")
    if not value:
        raise _fail("mod11_2", "length", "expected at least 1 digit")
    _require_charset(value, DIGITS, "mod11_2")
    return _mod11_2(value)


# --- GB 11643 citizen ID number ------------------------------------------------------------------


def citizen_id_check_char(first17: str) -> str:
    """GB 11643 check character for the first 17 digits of a citizen ID number."""
    value = _normalise(first17, "citizen_id")
    _require_length(value, (17,), "citizen_id")
    _require_charset(value, DIGITS, "citizen_id")
    return _mod11_2(value)


def _upgrade_legacy_citizen_id(value: str) -> str:
    # 15-digit numbers (issued before 1999) had a 2-digit year and no check character; GB 11643
    # defines the 18-digit form as the same number with "19" inserted and the check appended.
    _require_charset(value, DIGITS, "citizen_id")
    first17 = value[:6] + "19" + value[6:]
    return first17 + _mod11_2(first17)


def _parse_birth_date(yyyymmdd: str, today: date) -> date:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        raise _fail("citizen_id", "birth_date", "not a calendar date") from None
    if born < _EARLIEST_BIRTH_DATE:
        raise _fail("citizen_id", "birth_date", "before 1900")
    if born > today:
        raise _fail("citizen_id", "birth_date", "in the future")
    return born


def validate_citizen_id(value: str, *, today: date | None = None) -> str:
    """Return the normalised 18-character citizen ID number or raise IdentifierError.

    Accepts legacy 15-digit numbers and returns their 18-digit form. ``today`` bounds the birth
    date; pass the hub clock's date (the default reads the system date). The region prefix is not
    checked: retired region codes stay on valid cards, and other GB 11643 numbers (e.g. permanent
    residence cards) use prefixes outside GB/T 2260.
    """
    number = _normalise(value, "citizen_id")
    _require_length(number, (15, 18), "citizen_id")
    if len(number) == 15:
        number = _upgrade_legacy_citizen_id(number)
    _require_charset(number[:17], DIGITS, "citizen_id")
    _require_charset(number[17], MOD11_2_CHECK_CHARS, "citizen_id")
    _parse_birth_date(number[6:14], today if today is not None else date.today())
    _require_check_char(number[17], _mod11_2(number[:17]), "citizen_id")
    return number


def is_valid_citizen_id(value: str, *, today: date | None = None) -> bool:
    """True when validate_citizen_id accepts the value."""
    try:
        validate_citizen_id(value, today=today)
    except IdentifierError:
        return False
    return True


def citizen_id_gender(value: str, *, today: date | None = None) -> Literal["male", "female"]:
    """Gender from the sequence digit (odd = male); validates the number first."""
    number = validate_citizen_id(value, today=today)
    return "male" if int(number[16]) % 2 else "female"


def citizen_id_birth_date(value: str, *, today: date | None = None) -> date:
    """Birth date encoded in a citizen ID number; validates the number first."""
    number = validate_citizen_id(value, today=today)
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


# --- GB 11714 organisation code ------------------------------------------------------------------


def _organisation_check(first8: str) -> str:
    # Values 0–9 and A–Z = 10–35 (the full Latin alphabet, unlike GB 32100).
    total = sum(
        UPPER_ALNUM.index(ch) * w for ch, w in zip(first8, _ORGANISATION_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def organisation_code_check_char(first8: str) -> str:
    """GB 11714 check character for the 8-character body of an organisation code."""
    value = _normalise(first8, "organisation_code")
    _require_length(value, (8,), "organisation_code")
    _require_charset(value, UPPER_ALNUM, "organisation_code")
    return _organisation_check(value)


def validate_organisation_code(value: str) -> str:
    """Accept "XXXXXXXX-X" or 9 characters; return the display form with the hyphen."""
    code = _normalise(value, "organisation_code")
    if len(code) == 10 and code[8] == "-":
        code = code[:8] + code[9]
    _require_length(code, (9,), "organisation_code")
    _require_charset(code[:8], UPPER_ALNUM, "organisation_code")
    _require_charset(code[8], MOD11_2_CHECK_CHARS, "organisation_code")
    _require_check_char(code[8], _organisation_check(code[:8]), "organisation_code")
    return f"{code[:8]}-{code[8]}"


def is_valid_organisation_code(value: str) -> bool:
    """True when validate_organisation_code accepts the value."""
    try:
        validate_organisation_code(value)
    except IdentifierError:
        return False
    return True


# --- GB 32100 unified social credit code ---------------------------------------------------------


def _credit_check(first17: str) -> str:
    total = sum(
        CREDIT_CODE_ALPHABET.index(ch) * w for ch, w in zip(first17, _CREDIT_WEIGHTS, strict=True)
    )
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def credit_code_check_char(first17: str) -> str:
    """GB 32100 check character for the first 17 characters of a credit code."""
    value = _normalise(first17, "credit_code")
    _require_length(value, (17,), "credit_code")
    _require_charset(value, CREDIT_CODE_ALPHABET, "credit_code")
    return _credit_check(value)


def validate_credit_code(value: str) -> str:
    """Return the normalised (uppercase) credit code or raise IdentifierError.

    Characters 9–17 embed the GB 11714 organisation code and must pass its check too (all published
    samples do). The registering-authority, category and region characters are not checked against
    tables, which the issuing authorities extend over time.
    """
    code = _normalise(value, "credit_code")
    _require_length(code, (18,), "credit_code")
    _require_charset(code, CREDIT_CODE_ALPHABET, "credit_code")
    _require_check_char(code[17], _credit_check(code[:17]), "credit_code")
    if code[16] != _organisation_check(code[8:16]):
        raise _fail("credit_code", "organisation_code")
    return code


def is_valid_credit_code(value: str) -> bool:
    """True when validate_credit_code accepts the value."""
    try:
        validate_credit_code(value)
    except IdentifierError:
        return False
    return True


# --- Province item code (事项编码) and national basic code (基本编码) --------------------------

# Field name → width; the order is the order inside the code.
_ITEM_CODE_FIELDS = (
    ("region", 6),
    ("department", 3),
    ("item_type", 2),
    ("main_item", 3),
    ("sub_item", 3),
)


@dataclass(frozen=True)
class ItemCode:
    """The province item code without its check character; constructing one validates it."""

    region: str
    department: str
    item_type: str
    main_item: str
    sub_item: str

    def __post_init__(self) -> None:
        # Validate here rather than only in build/parse so that no invalid ItemCode can exist.
        for name, width in _ITEM_CODE_FIELDS:
            part = getattr(self, name)
            if not isinstance(part, str):
                raise _fail("item_code", "type", name)
            if len(part) != width:
                raise _fail("item_code", "length", f"{name} must have {width} digits")
            if any(ch not in DIGITS for ch in part):
                raise _fail("item_code", "charset", f"{name} must be digits")

    @property
    def body(self) -> str:
        """The 17 digits the check character covers."""
        return self.region + self.department + self.item_type + self.main_item + self.sub_item

    @property
    def check_char(self) -> str:
        return _mod11_2(self.body)

    @property
    def value(self) -> str:
        """The full 18-character code including the check character."""
        return self.body + self.check_char

    def __str__(self) -> str:
        return self.value


def build_item_code(
    region: str, department: str, item_type: str, main_item: str, sub_item: str = "000"
) -> ItemCode:
    """Build an item code from its parts; sub_item "000" means the item has no sub-items."""
    return ItemCode(region, department, item_type, main_item, sub_item)


def parse_item_code(value: str) -> ItemCode:
    """Parse and validate an 18-character item code."""
    code = _normalise(value, "item_code")
    _require_length(code, (18,), "item_code")
    _require_charset(code[:17], DIGITS, "item_code")
    _require_charset(code[17], MOD11_2_CHECK_CHARS, "item_code")
    _require_check_char(code[17], _mod11_2(code[:17]), "item_code")
    return ItemCode(code[:6], code[6:9], code[9:11], code[11:14], code[14:17])


def validate_national_basic_code(value: str) -> str:
    """Return the normalised 12-character national basic code (uppercase letters and digits).

    Only length and charset are enforced: vendors and ministries lay the code out differently.
    """
    code = _normalise(value, "national_basic_code")
    _require_length(code, (12,), "national_basic_code")
    _require_charset(code, UPPER_ALNUM, "national_basic_code")
    return code


# --- Tracking number (办件编号) ------------------------------------------------------------------

_MAX_SEQUENCE = 999_999


def _require_region(region: object, scheme: str) -> str:
    if not isinstance(region, str):
        raise _fail(scheme, "type", "region")
    if len(region) != 6:
        raise _fail(scheme, "length", "region must have 6 digits")
    _require_charset(region, DIGITS, scheme)
    return region


def build_tracking_number(region: str, day: date, sequence: int) -> str:
    """Region (6) + YYYYMMDD (8) + sequence (6) + MOD 11-2 check = 21 characters."""
    _require_region(region, "tracking_number")
    if not 0 <= sequence <= _MAX_SEQUENCE:
        raise _fail("tracking_number", "sequence", f"must be 0–{_MAX_SEQUENCE}")
    body = f"{region}{day:%Y%m%d}{sequence:06d}"
    return body + _mod11_2(body)


def parse_tracking_number(value: str) -> tuple[str, date, int]:
    """Validate a tracking number and return (region, day, sequence)."""
    number = _normalise(value, "tracking_number")
    _require_length(number, (21,), "tracking_number")
    _require_charset(number[:20], DIGITS, "tracking_number")
    _require_charset(number[20], MOD11_2_CHECK_CHARS, "tracking_number")
    _require_check_char(number[20], _mod11_2(number[:20]), "tracking_number")
    try:
        day = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise _fail("tracking_number", "date", "not a calendar date") from None
    return number[:6], day, int(number[14:20])


# --- Masking for public disclosure ---------------------------------------------------------------

NATURAL_PERSON = "1"  # applicant type code for a natural person in the national exchange tables
_PHONE_COUNTRY_PREFIX = re.compile(r"^(\+86|0086)[\s-]*")


def mask_name(name: str) -> str:
    """Keep the first character (usually the surname) and mask the rest: 张三 → 张*.

    A one-character name is masked completely, since keeping it would disclose it in full.
    """
    name = name.strip()
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def mask_applicant_name(name: str, applicant_type: str | int) -> str:
    """Mask natural persons only: enterprise and organisation names are public in China."""
    return mask_name(name) if str(applicant_type).strip() == NATURAL_PERSON else name


def _mask_middle(value: str, keep_head: int, keep_tail: int) -> str:
    hidden = len(value) - keep_head - keep_tail
    return value[:keep_head] + "*" * hidden + value[len(value) - keep_tail :]


def mask_id_number(value: str) -> str:
    """Keep the region (first 6) and last 4 of a citizen ID: 210102********123X.

    Shorter documents (passports, travel permits) keep only their first and last character,
    because keeping 10 characters of a 9-character number would hide nothing.
    """
    value = value.strip()
    if len(value) >= 15:
        return _mask_middle(value, 6, 4)
    if len(value) >= 3:
        return _mask_middle(value, 1, 1)
    return "*" * len(value)


def mask_identifier(value: str, applicant_type: str | int) -> str:
    """Mask a natural person's ID number; credit codes of organisations are public, kept as is."""
    if str(applicant_type).strip() == NATURAL_PERSON:
        return mask_id_number(value)
    return value


def mask_phone(value: str) -> str:
    """Mobile 13812345678 → 138****5678; separators and a +86 prefix are kept as written.

    Numbers of 7–10 digits (landlines) keep only their last 4 digits; shorter ones are masked fully.
    """
    value = value.strip()
    match = _PHONE_COUNTRY_PREFIX.match(value)
    prefix, rest = (value[: match.end()], value[match.end() :]) if match else ("", value)
    digit_count = sum(ch in DIGITS for ch in rest)
    head = 3 if digit_count >= 11 else 0
    tail = 4 if digit_count >= 7 else 0
    return prefix + _mask_digits(rest, head, digit_count - tail)


def _mask_digits(value: str, start: int, stop: int) -> str:
    # Mask the digits whose digit index is in [start, stop); leave separators where they are.
    out: list[str] = []
    index = 0
    for ch in value:
        if ch in DIGITS:
            out.append("*" if start <= index < stop else ch)
            index += 1
        else:
            out.append(ch)
    return "".join(out)
