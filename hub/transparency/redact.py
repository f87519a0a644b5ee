"""What public disclosure may show of personal data: masks keyed on what an identifier is, and a redactor
for free text.

* ``identifier_kind`` decides from the value itself (its shape and check character), not from the
  applicant type or ID type a record claims: a citizen ID number is masked as one even on a record of
  applicant type 9, a credit code is treated as a credit code.
* ``mask_person_name`` keeps only the first character of a natural person's name (张**, 李*);
  organisations' names are public.
* ``redact`` masks, in free text, citizen ID numbers (18-digit, with X, and 15-digit old ones), unified
  social credit codes, mobile and landline numbers, any other run of seven or more digits (bank cards,
  passports, QQ numbers: rather too much than too little) and the personal names it is given (the
  applicant's, the officers', the people named in the form). Digits are matched as Unicode digits, so
  full-width ones (１３８…) are caught too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

from workflow import identifiers as ids

IdentifierKind = Literal["citizen_id", "credit_code", "other"]
NATURAL_PERSON = "1"
MASK = "*"

_CREDIT_CHAR = "[0-9A-HJ-NPQRTUWXY]"
_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z\d])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z\d])"
# Order matters: the first alternative that matches at a position wins.
_PATTERNS: list[tuple[str, str]] = [
    ("citizen_id", rf"{_NOT_ALNUM_BEFORE}\d{{17}}[\dXxＸｘ]{_NOT_ALNUM_AFTER}"),
    ("credit_code", rf"{_NOT_ALNUM_BEFORE}{_CREDIT_CHAR}{{2}}\d{{6}}{_CREDIT_CHAR}{{10}}{_NOT_ALNUM_AFTER}"),
    ("old_citizen_id", rf"{_NOT_ALNUM_BEFORE}\d{{15}}{_NOT_ALNUM_AFTER}"),
    ("mobile", rf"{_NOT_ALNUM_BEFORE}(?:\+?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{{4}}){{2}}{_NOT_ALNUM_AFTER}"),
    ("landline", rf"{_NOT_ALNUM_BEFORE}(?:[(（]0\d{{2,3}}[)）]\s?|0\d{{2,3}}[-\s]?)\d{{7,8}}(?:[-转]\d{{1,6}})?"
                 rf"{_NOT_ALNUM_AFTER}"),
    ("long_number", r"\d{7,}"),
]
_SENSITIVE = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _PATTERNS), re.IGNORECASE)


# --- identifiers ------------------------------------------------------------------------------------


def identifier_kind(value: str, claimed_id_type: str | None = None) -> IdentifierKind:
    """What ``value`` is, by its own shape: a citizen ID number (18 digits, last may be X; or 15 digits),
    a unified social credit code (its GB 32100 check passes), or something else.

    An 18-digit number whose credit-code check passes but whose citizen-ID check fails is a credit code;
    every other 18-digit number counts as a citizen ID, checked or not, because masking it costs nothing."""
    number = unicodedata.normalize("NFKC", value).strip().upper()
    if re.fullmatch(r"\d{17}[\dX]", number):
        if not ids.is_valid_citizen_id(number) and ids.is_valid_credit_code(number):
            return "credit_code"
        return "citizen_id"
    if re.fullmatch(r"\d{15}", number):
        return "citizen_id"
    if re.fullmatch(f"{_CREDIT_CHAR}{{18}}", number) and ids.is_valid_credit_code(number):
        return "credit_code"
    return "citizen_id" if claimed_id_type == "citizen_id" else "other"


def mask_identifier(value: str, claimed_id_type: str | None = None) -> str:
    """Citizen IDs keep region and the last four (210102********123X); credit codes are public registers
    and stay whole; anything else (passports, unknown numbers) keeps only its first and last character."""
    kind = identifier_kind(value, claimed_id_type)
    if kind == "credit_code":
        return value.strip()
    if kind == "citizen_id":
        return ids.mask_id_number(value)
    value = value.strip()
    return value[0] + MASK * (len(value) - 2) + value[-1] if len(value) > 2 else MASK * len(value)


def is_natural_person(applicant_type: str, id_number: str, claimed_id_type: str | None = None) -> bool:
    """A natural person unless the identifier is an organisation's credit code and the record does not
    claim a natural person: doubt falls on the side of masking."""
    return applicant_type.strip() == NATURAL_PERSON or identifier_kind(id_number, claimed_id_type) != "credit_code"


def mask_person_name(name: str) -> str:
    """张晓明 → 张**, 欧阳娜娜 → 欧***: the project's one name mask (workflow.identifiers.mask_name), so the
    applicant's status view, registry summaries and the disclosure never disagree about what they reveal."""
    return ids.mask_name(name)


def mask_applicant_name(name: str, applicant_type: str, id_number: str, claimed_id_type: str | None = None) -> str:
    return mask_person_name(name) if is_natural_person(applicant_type, id_number, claimed_id_type) else name


# --- free text ----------------------------------------------------------------------------------------


def redact(text: str, *, names: Iterable[str] = ()) -> str:
    """``text`` with identifiers, phone numbers, long numbers and the given personal names masked."""
    redacted = _SENSITIVE.sub(_mask_match, text)
    for name in sorted({n.strip() for n in names if len(n.strip()) >= 2}, key=len, reverse=True):
        redacted = redacted.replace(name, mask_person_name(name))
    return redacted


def _mask_match(match: re.Match[str]) -> str:
    found = match.group(0)
    kind = match.lastgroup
    if kind == "citizen_id" or kind == "old_citizen_id":
        return found[:6] + MASK * (len(found) - 10) + found[-4:]
    if kind == "credit_code":
        return found[:2] + MASK * (len(found) - 4) + found[-2:]
    if kind in ("mobile", "landline"):
        return _mask_digits_keeping(found, head=3 if kind == "mobile" else 0, tail=4)
    return MASK * len(found)


def _mask_digits_keeping(value: str, *, head: int, tail: int) -> str:
    """Mask every digit but the first ``head`` (after a +86 prefix) and the last ``tail``."""
    prefix = re.match(r"\+?86[-\s]?(?=1)", value) if head else None
    start = prefix.end() if prefix else 0
    body = value[start:]
    digits = sum(ch.isdigit() for ch in body)
    out, index = [], 0
    for ch in body:
        if ch.isdigit():
            out.append(ch if index < head or index >= digits - tail else MASK)
            index += 1
        else:
            out.append(ch)
    return value[:start] + "".join(out)
