"""Deterministic seed data shared by the four mock registries.

``build_seed(seed)`` always returns the same people and organisations for the same seed, so tests and
the hub's demo can name known-good and known-bad identities. The organisations appear consistently in
the enterprise, tax and organisation-code registries (institutions are not enterprises, so they are
absent from the enterprise registry), and every legal representative is a person of the population
registry.

The first records of each list are fixed fixtures (normal / deceased / cancelled person; active /
revoked / cancelled company; active company with tax arrears); the rest are random but reproducible.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

from mocks.registries.checks import (
    CREDIT_ALPHABET,
    citizen_id_check,
    credit_code_check,
    organisation_code_check,
)

PersonStatus = Literal["normal", "deceased", "cancelled"]
EnterpriseStatus = Literal["active", "revoked", "cancelled"]
TaxStatus = Literal["normal", "abnormal", "cancelled"]
CreditGrade = Literal["A", "B", "M", "C", "D"]
OrganisationKind = Literal["enterprise", "institution"]

DEFAULT_SEED = 2026
PEOPLE = 400
ENTERPRISES = 270
INSTITUTIONS = 30
# The newest date the data may mention; keeps every generated fact in the past for years to come.
_LATEST = date(2025, 12, 31)

# (division code, city, district): real GB/T 2260 districts of Liaoning (21xxxx).
DISTRICTS: tuple[tuple[str, str, str], ...] = (
    ("210102", "沈阳市", "和平区"), ("210103", "沈阳市", "沈河区"), ("210104", "沈阳市", "大东区"),
    ("210105", "沈阳市", "皇姑区"), ("210106", "沈阳市", "铁西区"), ("210112", "沈阳市", "浑南区"),
    ("210114", "沈阳市", "于洪区"), ("210202", "大连市", "中山区"), ("210203", "大连市", "西岗区"),
    ("210204", "大连市", "沙河口区"), ("210211", "大连市", "甘井子区"), ("210213", "大连市", "金州区"),
    ("210302", "鞍山市", "铁东区"), ("210303", "鞍山市", "铁西区"), ("210402", "抚顺市", "新抚区"),
    ("210502", "本溪市", "平山区"), ("210602", "丹东市", "元宝区"), ("210603", "丹东市", "振兴区"),
    ("210702", "锦州市", "古塔区"), ("210802", "营口市", "站前区"), ("210902", "阜新市", "海州区"),
    ("211002", "辽阳市", "白塔区"), ("211102", "盘锦市", "双台子区"), ("211202", "铁岭市", "银州区"),
    ("211302", "朝阳市", "双塔区"), ("211402", "葫芦岛市", "连山区"),
)

_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗郑梁谢宋唐于董韩曹冯邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
    "余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"
)
_MALE_CHARS = "伟刚勇毅俊峰强军平保东文辉力明永健世广志义兴良海山仁波宁贵福生龙元全国胜学祥才发武新利清飞彬富顺信子杰涛昌成康星光天达安岩中茂进林有坚和彪博诚先敬震振壮会思群豪心邦承乐绍功松善厚庆磊民友裕河哲江超浩亮政谦亨奇固之轮翰朗伯宏言若鸣朋斌梁栋维启克伦翔旭鹏泽晨辰士以建家致树炎德行时泰盛雄琛钧冠策腾楠榕风航弘"  # noqa: E501
_FEMALE_CHARS = "秀娟英华慧巧美娜静淑惠珠翠雅芝玉萍红娥玲芬芳燕彩春菊兰凤洁梅琳素云莲真环雪荣爱妹霞香月莺媛艳瑞凡佳嘉琼勤珍贞莉桂娣叶璧璐娅琦晶妍茜秋珊莎锦黛青倩婷姣婉娴瑾颖露瑶怡婵雁蓓纨仪荷丹蓉眉君琴蕊薇菁梦岚苑婕馨瑗琰韵融园艺咏卿聪澜纯毓悦昭冰爽琬茗羽希宁欣飘育滢馥筠柔竹霭凝晓欢霄枫芸菲寒伊亚宜可姬舒影荔枝思丽"  # noqa: E501
_STREETS = (
    "中山路", "人民路", "解放路", "建设大路", "青年大街", "北京街", "南京北街", "长江街", "黄河大街", "友谊街",
    "和平大街", "胜利路", "新华路", "光明街", "五一路", "文化路", "团结路", "民主路", "兴工街", "滨河路",
)
_BRANDS = (
    "恒通", "华信", "瑞丰", "鑫达", "宏远", "金桥", "东方", "北方", "辽河", "海润", "天成", "盛京", "博远", "锦程",
    "中兴", "永安", "新华", "泰和", "久安", "星海", "远航", "鼎盛", "汇丰", "众诚", "广厦", "联创", "润泽", "昌盛",
    "德信", "长青", "龙腾", "金鼎", "华润", "嘉禾", "万通", "正阳", "宏达", "富源", "兴业", "汇通",
)
# (name part, business scope)
_INDUSTRIES = (
    ("机械制造", "通用设备制造；机械设备销售；技术服务、技术开发"),
    ("软件科技", "软件开发；信息技术咨询服务；信息系统集成服务"),
    ("食品", "食品生产；食品销售；农副产品销售"),
    ("建筑工程", "房屋建筑和市政基础设施项目工程总承包；建筑材料销售"),
    ("物流", "道路货物运输（不含危险货物）；普通货物仓储服务"),
    ("商贸", "日用百货销售；五金产品批发；家用电器销售"),
    ("餐饮管理", "餐饮服务；餐饮管理；食品销售"),
    ("医药", "药品零售；第二类医疗器械销售；保健食品销售"),
    ("农业发展", "谷物种植；蔬菜种植；农产品的生产、销售、加工、运输、贮藏"),
    ("环保科技", "环保咨询服务；污水处理及其再生利用；固体废物治理"),
    ("文化传媒", "广告设计、代理；组织文化艺术交流活动；会议及展览服务"),
    ("物业服务", "物业管理；家政服务；停车场服务"),
    ("汽车销售", "汽车新车销售；汽车零配件零售；机动车修理和维护"),
    ("化工", "化工产品销售（不含许可类化工产品）；专用化学产品制造"),
)
# (registry type, name suffix)
_ENTERPRISE_TYPES = (
    ("有限责任公司（自然人投资或控股）", "有限公司"),
    ("有限责任公司（自然人独资）", "有限公司"),
    ("有限责任公司（法人独资）", "有限公司"),
    ("股份有限公司（非上市、自然人投资或控股）", "股份有限公司"),
    ("有限责任公司（国有独资）", "有限公司"),
)
_INSTITUTION_KINDS = (
    "第{n}中学", "第{n}小学", "社区卫生服务中心", "图书馆", "疾病预防控制中心", "公共就业服务中心",
    "文化馆", "不动产登记中心", "政务服务中心", "中心医院",
)
_CAPITALS = (100_000, 300_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 30_000_000,
             50_000_000)
_GRADES: tuple[CreditGrade, ...] = ("A", "B", "M", "C", "D")
_GRADE_WEIGHTS = (30, 40, 15, 10, 5)


@dataclass(frozen=True)
class Person:
    """A person of the population registry."""

    id_number: str
    name: str
    gender: Literal["male", "female"]
    birth_date: date
    registered_address: str
    status: PersonStatus
    photo_digest: str


@dataclass(frozen=True)
class Organisation:
    """One organisation as the enterprise, tax and organisation-code registries all know it."""

    credit_code: str
    organisation_code: str  # display form XXXXXXXX-X
    kind: OrganisationKind
    name: str
    enterprise_type: str  # registry type text; for institutions "事业单位"
    organisation_type: str  # 企业法人 / 事业单位 in the organisation-code registry
    legal_representative_id: str
    legal_representative_name: str
    registered_capital: Decimal  # yuan
    address: str
    status: EnterpriseStatus
    status_changed_on: date | None  # revocation or cancellation date
    business_scope: str
    established_on: date
    tax_status: TaxStatus
    tax_office: str
    credit_grade: CreditGrade
    arrears: bool

    @property
    def valid_to(self) -> date | None:
        """End of validity in the organisation-code registry; open-ended while active."""
        return self.status_changed_on


@dataclass(frozen=True)
class Seed:
    """All seed records plus the well-known fixtures tests and demos rely on."""

    seed: int
    people: tuple[Person, ...]
    organisations: tuple[Organisation, ...]
    normal_person: Person
    deceased_person: Person
    cancelled_person: Person
    active_company: Organisation
    revoked_company: Organisation
    cancelled_company: Organisation
    company_with_arrears: Organisation
    institution: Organisation
    # Valid check characters but present in no registry: for not-found paths.
    unknown_id_number: str
    unknown_credit_code: str
    unknown_organisation_code: str
    _people_by_id: Mapping[str, Person] = field(repr=False, compare=False, default_factory=dict)
    _orgs_by_credit: Mapping[str, Organisation] = field(repr=False, compare=False, default_factory=dict)
    _orgs_by_code: Mapping[str, Organisation] = field(repr=False, compare=False, default_factory=dict)

    def person(self, id_number: str) -> Person | None:
        return self._people_by_id.get(id_number)

    def organisation(self, credit_code: str) -> Organisation | None:
        return self._orgs_by_credit.get(credit_code)

    def organisation_by_code(self, organisation_code: str) -> Organisation | None:
        """Look up by organisation code, with or without the hyphen."""
        plain = organisation_code.replace("-", "")
        return self._orgs_by_code.get(plain)

    @property
    def enterprises(self) -> tuple[Organisation, ...]:
        return tuple(o for o in self.organisations if o.kind == "enterprise")


# --- people --------------------------------------------------------------------------------------


def _random_date(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def _id_number(rng: random.Random, region: str, born: date, gender: str) -> str:
    # The sequence digit's parity carries the gender: odd = male.
    sequence = rng.randrange(0, 1000)
    if (sequence % 2 == 1) != (gender == "male"):
        sequence = (sequence + 1) % 1000
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + citizen_id_check(body)


def _person_name(rng: random.Random, gender: str) -> str:
    pool = _MALE_CHARS if gender == "male" else _FEMALE_CHARS
    given = "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2, 2))))
    return rng.choice(_SURNAMES) + given


def _home_address(rng: random.Random, city: str, district: str) -> str:
    return (f"辽宁省{city}{district}{rng.choice(_STREETS)}{rng.randrange(1, 400)}号"
            f"{rng.randrange(1, 30)}-{rng.randrange(1, 6)}-{rng.randrange(1, 4)}")


def _make_person(rng: random.Random, status: PersonStatus, taken: set[str]) -> Person:
    code, city, district = rng.choice(DISTRICTS)
    gender = rng.choice(("male", "female"))
    # Living people born 1940–2005; the deceased skew older, as they would in a real registry.
    earliest = date(1925, 1, 1) if status == "deceased" else date(1940, 1, 1)
    born = _random_date(rng, earliest, date(2005, 12, 31))
    number = _id_number(rng, code, born, gender)
    while number in taken:
        number = _id_number(rng, code, born, gender)
    taken.add(number)
    return Person(
        id_number=number,
        name=_person_name(rng, gender),
        gender="male" if gender == "male" else "female",
        birth_date=born,
        registered_address=_home_address(rng, city, district),
        status=status,
        photo_digest=hashlib.sha256(f"photo:{number}".encode()).hexdigest(),
    )


def _person_status(rng: random.Random, index: int) -> PersonStatus:
    fixed: tuple[PersonStatus, ...] = ("normal", "deceased", "cancelled")
    if index < len(fixed):
        return fixed[index]
    roll = rng.random()
    return "deceased" if roll < 0.05 else "cancelled" if roll < 0.08 else "normal"


def _build_people(rng: random.Random) -> tuple[Person, ...]:
    taken: set[str] = set()
    return tuple(_make_person(rng, _person_status(rng, i), taken) for i in range(PEOPLE))


# --- organisations -------------------------------------------------------------------------------


def _organisation_body(rng: random.Random) -> str:
    # Since 2015 new codes issued inside credit codes start with "MA"; older ones are 8 digits.
    if rng.random() < 0.5:
        return "MA" + "".join(rng.choice(CREDIT_ALPHABET) for _ in range(6))
    return "".join(rng.choice("0123456789") for _ in range(8))


def _credit_code(rng: random.Random, prefix: str, region: str, taken_org_codes: set[str]) -> str:
    # The organisation code identifies the organisation for life, so it must be unique on its own;
    # that makes the credit code unique too.
    while True:
        body = _organisation_body(rng)
        org_code = body + organisation_code_check(body)
        if org_code not in taken_org_codes:
            taken_org_codes.add(org_code)
            first17 = f"{prefix}{region}{org_code}"
            return first17 + credit_code_check(first17)


@dataclass(frozen=True)
class _OrgPlan:
    """Which fixed fixture (if any) an organisation index is, and its status and tax facts."""

    status: EnterpriseStatus
    grade: CreditGrade
    arrears: bool


def _org_plan(rng: random.Random, index: int) -> _OrgPlan:
    fixed = {
        0: _OrgPlan("active", "A", False),  # active_company
        1: _OrgPlan("revoked", "D", True),  # revoked_company
        2: _OrgPlan("cancelled", "M", False),  # cancelled_company
        3: _OrgPlan("active", "C", True),  # company_with_arrears
    }
    if index in fixed:
        return fixed[index]
    roll = rng.random()
    status: EnterpriseStatus = "revoked" if roll < 0.08 else "cancelled" if roll < 0.13 else "active"
    grade = rng.choices(_GRADES, weights=_GRADE_WEIGHTS)[0]
    arrears = rng.random() < (0.6 if grade in ("C", "D") else 0.05)
    return _OrgPlan(status, grade, arrears)


# A revoked licence leaves the taxpayer registered but "abnormal" (非正常户) until it is closed.
_TAX_STATUS: Mapping[EnterpriseStatus, TaxStatus] = {
    "active": "normal", "revoked": "abnormal", "cancelled": "cancelled",
}


def _unique_name(make: Callable[[], str], taken: set[str]) -> str:
    for _ in range(1000):
        name = make()
        if name not in taken:
            taken.add(name)
            return name
    raise RuntimeError("could not generate a unique organisation name")


def _city_short(city: str) -> str:
    return city.removesuffix("市")


def _status_date(rng: random.Random, status: EnterpriseStatus, established: date) -> date | None:
    if status == "active":
        return None
    return _random_date(rng, min(established + timedelta(days=365), _LATEST), _LATEST)


def _make_enterprise(rng: random.Random, index: int, rep: Person, taken_codes: set[str],
                     taken_names: set[str]) -> Organisation:
    code, city, district = rng.choice(DISTRICTS)
    industry, scope = rng.choice(_INDUSTRIES)
    enterprise_type, suffix = rng.choice(_ENTERPRISE_TYPES)
    name = _unique_name(lambda: f"{_city_short(city)}{rng.choice(_BRANDS)}{industry}{suffix}", taken_names)
    plan = _org_plan(rng, index)
    established = _random_date(rng, _adult_on(rep, date(1995, 1, 1)), date(2024, 12, 31))
    credit = _credit_code(rng, "91", code, taken_codes)
    return Organisation(
        credit_code=credit, organisation_code=f"{credit[8:16]}-{credit[16]}", kind="enterprise",
        name=name, enterprise_type=enterprise_type, organisation_type="企业法人",
        legal_representative_id=rep.id_number, legal_representative_name=rep.name,
        registered_capital=Decimal(rng.choice(_CAPITALS)).quantize(Decimal("0.01")),
        address=f"辽宁省{city}{district}{rng.choice(_STREETS)}{rng.randrange(1, 900)}号",
        status=plan.status, status_changed_on=_status_date(rng, plan.status, established),
        business_scope=scope, established_on=established, tax_status=_TAX_STATUS[plan.status],
        tax_office=f"国家税务总局{city}{district}税务局", credit_grade=plan.grade, arrears=plan.arrears,
    )


def _make_institution(rng: random.Random, rep: Person, taken_codes: set[str], taken_names: set[str]) -> Organisation:
    code, city, district = rng.choice(DISTRICTS)

    def make() -> str:
        kind = rng.choice(_INSTITUTION_KINDS).format(n=rng.randrange(1, 60))
        return f"{city}{district}{kind}"

    established = _random_date(rng, _adult_on(rep, date(1995, 1, 1)), date(2024, 12, 31))
    credit = _credit_code(rng, "12", code, taken_codes)
    return Organisation(
        credit_code=credit, organisation_code=f"{credit[8:16]}-{credit[16]}", kind="institution",
        name=_unique_name(make, taken_names), enterprise_type="事业单位", organisation_type="事业单位",
        legal_representative_id=rep.id_number, legal_representative_name=rep.name,
        registered_capital=Decimal(rng.choice(_CAPITALS[:5])).quantize(Decimal("0.01")),
        address=f"辽宁省{city}{district}{rng.choice(_STREETS)}{rng.randrange(1, 900)}号",
        status="active", status_changed_on=None, business_scope="公益服务", established_on=established,
        tax_status="normal", tax_office=f"国家税务总局{city}{district}税务局",
        credit_grade=rng.choices(_GRADES[:3])[0], arrears=False,
    )


def _adult_on(person: Person, earliest: date) -> date:
    """The first date from ``earliest`` on which ``person`` is an adult (18), so can represent an organisation."""
    return max(earliest, person.birth_date + timedelta(days=18 * 366))


def _representatives(people: tuple[Person, ...]) -> list[Person]:
    # Living adults (born by 2000) other than the deceased/cancelled fixtures can represent organisations.
    return [p for p in people[3:] if p.status == "normal" and p.birth_date <= date(2000, 12, 31)]


def _build_organisations(rng: random.Random, people: tuple[Person, ...]) -> tuple[Organisation, ...]:
    reps = _representatives(people)
    taken_codes: set[str] = set()
    taken_names: set[str] = set()
    enterprises = [
        # The active fixture company is represented by the normal fixture person, so a demo can
        # verify a company and its representative together.
        _make_enterprise(rng, i, people[0] if i == 0 else rng.choice(reps), taken_codes, taken_names)
        for i in range(ENTERPRISES)
    ]
    institutions = [_make_institution(rng, rng.choice(reps), taken_codes, taken_names) for _ in range(INSTITUTIONS)]
    return tuple(enterprises + institutions)


# --- unknown identifiers -------------------------------------------------------------------------


def _unknown_id(rng: random.Random, taken: Mapping[str, Person]) -> str:
    while True:
        number = _id_number(rng, "210102", _random_date(rng, date(1960, 1, 1), date(1999, 12, 31)), "male")
        if number not in taken:
            return number


def _unknown_credit(rng: random.Random, taken: Mapping[str, Organisation]) -> str:
    # _credit_code never repeats an organisation code it is told about, so the result is in no registry.
    return _credit_code(rng, "91", "210102", {code[8:17] for code in taken})


@lru_cache(maxsize=8)
def build_seed(seed: int = DEFAULT_SEED) -> Seed:
    """The seed data for ``seed``; identical on every call and every machine (records are frozen)."""
    rng = random.Random(seed)
    people = _build_people(rng)
    organisations = _build_organisations(rng, people)
    by_id = MappingProxyType({p.id_number: p for p in people})
    by_credit = MappingProxyType({o.credit_code: o for o in organisations})
    by_code = MappingProxyType({o.credit_code[8:17]: o for o in organisations})
    unknown_credit = _unknown_credit(rng, by_credit)
    enterprises = [o for o in organisations if o.kind == "enterprise"]
    return Seed(
        seed=seed, people=people, organisations=organisations,
        normal_person=people[0], deceased_person=people[1], cancelled_person=people[2],
        active_company=enterprises[0], revoked_company=enterprises[1], cancelled_company=enterprises[2],
        company_with_arrears=enterprises[3],
        institution=next(o for o in organisations if o.kind == "institution"),
        unknown_id_number=_unknown_id(rng, by_id), unknown_credit_code=unknown_credit,
        unknown_organisation_code=f"{unknown_credit[8:16]}-{unknown_credit[16]}",
        _people_by_id=by_id, _orgs_by_credit=by_credit, _orgs_by_code=by_code,
    )
