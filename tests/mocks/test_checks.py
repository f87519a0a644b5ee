"""The mocks' own check-character helpers agree with workflow.identifiers (two independent implementations)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mocks.registries import checks
from workflow import identifiers

digits = st.text(alphabet="0123456789", min_size=17, max_size=17)
org_bodies = st.text(alphabet=checks.LATIN, min_size=8, max_size=8)
credit_bodies = st.text(alphabet=checks.CREDIT_ALPHABET, min_size=8, max_size=8)


def test_published_samples_pass() -> None:
    for code in ("91110000600037341L", "91110108551385082Q", "91420684MA4927PJ7B"):
        assert checks.is_credit_code(code)
    assert checks.is_citizen_id("11010519491231002X")
    assert checks.is_organisation_code("60003734-1")


@given(digits)
def test_citizen_id_check_matches_workflow(first17: str) -> None:
    assert checks.citizen_id_check(first17) == identifiers.citizen_id_check_char(first17)


@given(org_bodies)
def test_organisation_code_check_matches_workflow(body: str) -> None:
    assert checks.organisation_code_check(body) == identifiers.organisation_code_check_char(body)


@given(st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=2, max_size=2),
       st.text(alphabet="0123456789", min_size=6, max_size=6), credit_bodies)
def test_credit_code_built_by_the_mock_helpers_is_accepted_by_workflow(prefix: str, region: str, body: str) -> None:
    first17 = prefix + region + body + checks.organisation_code_check(body)
    code = first17 + checks.credit_code_check(first17)
    assert checks.is_credit_code(code)
    assert identifiers.is_valid_credit_code(code)


# Letters are worth 10–35, so swapping e.g. "0" for "B" (11) shifts the sum by a multiple of 11 and
# GB 11714 cannot see it; among digits every single change is caught.
@given(st.text(alphabet="0123456789", min_size=8, max_size=8), st.integers(min_value=0, max_value=8),
       st.sampled_from("0123456789"))
def test_changing_one_digit_of_an_organisation_code_breaks_it(body: str, position: int, char: str) -> None:
    code = body + checks.organisation_code_check(body)
    changed = code[:position] + char + code[position + 1:]
    if changed != code:
        assert not checks.is_organisation_code(changed)
