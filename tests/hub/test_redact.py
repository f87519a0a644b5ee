"""The disclosure's redactor and identifier masks (hub/transparency/redact.py), tested directly."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.transparency.redact import identifier_kind, is_natural_person, mask_identifier, redact
from tests.support import citizen_id, credit_code
from workflow.identifiers import citizen_id_check_char

ID = "11010519491231002X"


@pytest.mark.parametrize(("text", "names", "expected"), [
    ("张晓明 13812345678 11010519491231002X", ["张晓明"], "张** 138****5678 110105********002X"),
    ("身份证号11010519491231002x，电话13812345678。", [], "身份证号110105********002x，电话138****5678。"),
    ("老身份证110105491231002", [], "老身份证110105*****1002"),
    ("统一社会信用代码91110108551385082Q的企业", [], "统一社会信用代码91**************2Q的企业"),
    ("信用代码91110108551385082q", [], "信用代码91**************2q"),
    ("手机 +86 138 1234 5678", [], "手机 +86 138 **** 5678"),
    ("手机138-1234-5678", [], "手机138-****-5678"),
    ("手机８６１３８１２３４５６７８", [], "手机*************"),  # full-width: masked as a long number
    ("电话024-23456789", [], "电话***-****6789"),
    ("电话（024）23456789", [], "电话（***）****6789"),
    ("电话02423456789", [], "电话*******6789"),
    ("卡号6222021234567890123", [], "卡号*******************"),
    ("身份证11010519491231002X1", [], "身份证*****************X1"),  # in a longer run
    ("请于2026年3月20日前补正第2项材料，收费100元", [], "请于2026年3月20日前补正第2项材料，收费100元"),
    ("截止2026-03-20 17:30", [], "截止2026-03-20 17:30"),
    ("经办人王科员审核；对方林雨萱到场", ["王科员", "林雨萱"], "经办人王**审核；对方林**到场"),
    ("欧阳娜娜与欧阳", ["欧阳娜娜", "欧阳"], "欧***与欧*"),
    ("单字名张不处理", ["张"], "单字名张不处理"),
])
def test_redact_masks_identifiers_phones_and_names(text: str, names: list[str], expected: str) -> None:
    assert redact(text, names=names) == expected


def test_the_issues_opinion_keeps_none_of_its_personal_data() -> None:
    out = redact("张晓明 13812345678 11010519491231002X", names=["张晓明"])
    for secret in ("张晓明", "13812345678", ID, "19491231", "晓明", "1234"):
        assert secret not in out


# --- properties --------------------------------------------------------------------------------------

FILLER = st.text(alphabet=st.sampled_from("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主"
                                          "，。；：、（）《》 -abcXYZ"), max_size=30)
REGIONS = st.sampled_from(["110105", "210102", "210211", "440305", "510107"])
BIRTHS = st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31))
MOBILES = st.builds(lambda prefix, rest: f"1{prefix}{rest:09d}", st.sampled_from("3456789"),
                    st.integers(0, 10**9 - 1))


@st.composite
def citizen_ids(draw: st.DrawFn) -> str:
    body = f"{draw(REGIONS)}{draw(BIRTHS):%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return body + citizen_id_check_char(body)


@given(before=FILLER, between=FILLER, after=FILLER, number=citizen_ids(), phone=MOBILES)
def test_no_id_number_birth_date_or_phone_survives(before: str, between: str, after: str, number: str,
                                                   phone: str) -> None:
    out = redact(f"{before}{number}{between}{phone}{after}")
    assert number not in out and number[6:14] not in out
    assert phone not in out
    assert f"{phone[:3]}****{phone[7:]}" in out or "*" * 11 in out  # masked alone, or with the ID as one run


@given(text=FILLER)
def test_text_without_numbers_or_names_is_unchanged(text: str) -> None:
    assert redact(text) == text


@given(before=FILLER, after=FILLER, digits=st.text(alphabet="0123456789０１２３４５６７８９", min_size=7, max_size=25))
def test_no_run_of_seven_digits_survives(before: str, after: str, digits: str) -> None:
    out = redact(f"{before}{digits}{after}")
    assert digits not in out
    assert not any(len(run) >= 7 for run in "".join(c if c.isdigit() else " " for c in out).split())


@given(text=st.text(alphabet=st.characters(categories=["Nd", "Lo", "Lu", "Ll", "P", "Zs"]), max_size=60))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@given(number=citizen_ids(), name=st.text(alphabet="张王李赵刘陈杨黄周吴晓明华丽强军", min_size=2, max_size=4))
def test_the_name_given_never_survives(number: str, name: str) -> None:
    assert name not in redact(f"申请人{name}，身份证{number}", names=[name])


# --- identifiers: by what the number is, not what the record claims ---------------------------------------


def test_identifier_kind_reads_the_value() -> None:
    assert identifier_kind(citizen_id()) == "citizen_id"
    assert identifier_kind(citizen_id(), "credit_code") == "citizen_id"
    assert identifier_kind("110105491231002", "other") == "citizen_id"
    assert identifier_kind("１１０１０５１９４９１２３１００２Ｘ") == "citizen_id"  # full-width
    assert identifier_kind(credit_code(), "citizen_id") == "credit_code"
    assert identifier_kind("91110108551385082Q") == "credit_code"
    assert identifier_kind("91110108551385082A") == "other"  # check character wrong: not a public code
    assert identifier_kind("E12345678", "passport") == "other"


def test_masks_key_on_the_identifier() -> None:
    number = citizen_id()
    assert mask_identifier(number, "credit_code") == number[:6] + "********" + number[-4:]
    assert mask_identifier("91110108551385082Q", "credit_code") == "91110108551385082Q"
    assert mask_identifier("E12345678", "passport") == "E*******8"
    assert is_natural_person("9", number, "citizen_id")
    assert is_natural_person("2", number, "credit_code")  # claims an enterprise, carries a citizen ID
    assert is_natural_person("9", "E12345678", "passport")
    assert not is_natural_person("2", "91110108551385082Q", "credit_code")
    assert is_natural_person("1", "91110108551385082Q", "credit_code")
