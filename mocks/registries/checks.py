"""Check characters for the national identifier schemes, written here for the mocks alone.

The mocks may not import workflow/ (they stand in for systems the hub does not control), so they
carry their own small implementation. Tests compare it with workflow.identifiers, which makes the
two independent implementations check each other.
"""

from __future__ import annotations

from datetime import date

DIGITS = "0123456789"
LATIN = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# GB 32100 drops I, O, S, V, Z (easily misread); a character's value is its index.
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def citizen_id_check(first17: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character for 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def organisation_code_check(first8: str) -> str:
    """GB 11714 check character for the 8-character body (0-9, A-Z = 10-35)."""
    total = sum(LATIN.index(ch) * w for ch, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def credit_code_check(first17: str) -> str:
    """GB 32100 check character for the first 17 characters."""
    total = sum(CREDIT_ALPHABET.index(ch) * w for ch, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def is_citizen_id(value: str) -> bool:
    """True for an 18-character number with a real birth date and a correct check character."""
    if len(value) != 18 or any(ch not in DIGITS for ch in value[:17]):
        return False
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return value[17] == citizen_id_check(value[:17])


def is_organisation_code(value: str) -> bool:
    """True for 'XXXXXXXX-X' or 9 characters with a correct check character."""
    if len(value) == 10 and value[8] == "-":
        value = value[:8] + value[9]
    if len(value) != 9 or any(ch not in LATIN for ch in value[:8]):
        return False
    return value[8] == organisation_code_check(value[:8])


def is_credit_code(value: str) -> bool:
    """True for 18 credit-alphabet characters whose own and embedded organisation checks pass."""
    if len(value) != 18 or any(ch not in CREDIT_ALPHABET for ch in value):
        return False
    return value[17] == credit_code_check(value[:17]) and value[16] == organisation_code_check(value[8:16])

