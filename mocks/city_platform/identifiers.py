"""Applicants' identifiers: valid GB 11643 citizen ID numbers and GB 32100 credit codes."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from mocks.registries.checks import CREDIT_ALPHABET, citizen_id_check, credit_code_check, organisation_code_check


def citizen_id(rng: random.Random, region: str, *, born_after: int = 1950, born_before: int = 2004) -> str:
    """A GB 11643 number: region, birth date, sequence, MOD 11-2 check character."""
    born = datetime(rng.randint(born_after, born_before), 1, 1) + timedelta(days=rng.randint(0, 364))
    body = f"{region}{born:%Y%m%d}{rng.randint(0, 999):03d}"
    return body + citizen_id_check(body)


def credit_code(rng: random.Random, region: str, category: str = "91") -> str:
    """A GB 32100 code: category, region, embedded GB 11714 organisation code, check character."""
    org = "".join(rng.choice(CREDIT_ALPHABET[:10] + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    body = f"{category}{region}{org}{organisation_code_check(org)}"
    return body + credit_code_check(body)
