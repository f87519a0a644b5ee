from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from hub.pagination import PageOut
from hub.text_fields import Name

Level = Literal["province", "city", "county"]
Kind = Literal["instant", "promised"]
MaterialForm = Literal["original", "copy", "electronic"]
Registry = Literal["population", "enterprise", "tax", "organisation"]
ApplicantType = Literal["1", "2", "3", "4", "5", "6", "9"]
# Whom or what a material is about. Only the applicant and the applicant enterprise's legal
# representative are ever looked up in a registry; everybody else in this list (the other party of a
# marriage, shareholders, directors, staff, an agent, family members, a household) is not.
Subject = Literal["applicant", "legal_representative", "both_parties", "shareholders", "management", "staff",
                  "agent", "family", "household", "matter"]
# Which registry can vouch for which subject: exactly the checks the hub runs (check key
# "<registry>.<subject>", hub/verification/checks.py). A material about anyone else cannot be replaced.
REPLACEABLE_FOR: dict[str, frozenset[str]] = {
    "applicant": frozenset({"population", "enterprise", "tax", "organisation"}),
    "legal_representative": frozenset({"population"}),
}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaterialSpec(StrictModel):
    key: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1, max_length=128)
    form: MaterialForm
    count: int = Field(ge=1, le=99)
    required: bool = True
    legal_basis: str | None = Field(default=None, max_length=500)
    subject: Subject | None = Field(
        default=None, description="whom the material is about; required when replaceable_by is set")
    replaceable_by: Registry | None = Field(
        default=None, description="the registry whose successful check of `subject` makes the material unnecessary")

    @model_validator(mode="after")
    def _replaceable_only_for_a_verified_subject(self) -> MaterialSpec:
        if self.replaceable_by is None:
            return self
        if self.subject is None:
            raise ValueError("replaceable_by 须同时注明材料所涉主体 subject (a replaceable material must name its "
                             "subject)")
        if self.replaceable_by not in REPLACEABLE_FOR.get(self.subject, frozenset()):
            raise ValueError(f"{self.replaceable_by} 信息库不核验 {self.subject}，该材料不能以核验代替 (the "
                             f"{self.replaceable_by} registry does not verify the {self.subject}: not replaceable)")
        return self


class FeeCondition(StrictModel):
    """When an exemption applies: an applicant type, or a form field holding a value (e.g. 低保对象 = true)."""

    applicant_type: ApplicantType | None = None
    form_field: str | None = Field(default=None, min_length=1, max_length=64)
    equals: str | int | float | bool | None = Field(
        default=None, description="the value of ``form_field`` that exempts the applicant")


class FeeExemption(StrictModel):
    when: FeeCondition
    basis: str = Field(min_length=1, max_length=500, description="the provision that exempts (免收依据)")


class Fee(StrictModel):
    """An item's fee rule (收费标准). The original shape ``{amount_fen, basis, description}`` is still a valid
    rule: fixed, due before completion. Cross-field rules (a per-unit fee's count field exists in the form,
    ...) are checked with the item (hub/payments/fees.py ``rule_errors``), naming the field and the rule."""

    kind: Literal["fixed", "per_unit"] = "fixed"
    amount_fen: int | None = Field(default=None, ge=0, le=10**10,
                                   description="fixed: the amount; per unit: shown in the catalogue (one unit)")
    unit_fen: int | None = Field(default=None, ge=1, le=10**10, description="per unit: the price of one unit")
    unit_field: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="per unit: the form field (an integer) holding the count")
    max_fen: int | None = Field(default=None, ge=1, le=10**10, description="per unit: the cap of the amount")
    basis: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=500)
    due: Literal["before_acceptance", "before_completion"] = "before_completion"
    exemptions: list[FeeExemption] = Field(default_factory=list, max_length=20)

    def shown_fen(self) -> int | None:
        """The amount the catalogue shows (``fee_fen``): the fixed amount, or one unit's price."""
        if self.kind == "per_unit":
            return self.amount_fen if self.amount_fen is not None else self.unit_fen
        return self.amount_fen


class SpecialProcedure(StrictModel):
    kind: str = Field(min_length=1, max_length=64)
    counts_in_limit: bool
    max_days: int | None = Field(default=None, ge=0, le=365)


class DepartmentRef(StrictModel):
    region: str = Field(pattern=r"^\d{6}$")
    code: str = Field(pattern=r"^\d{3}$")


BranchName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
DepartmentKey = Annotated[str, StringConstraints(pattern=r"^\d{9}$")]


class Guide(StrictModel):
    """办事指南: what an applicant needs to know before applying."""

    legal_basis: str = Field(min_length=1, max_length=2000)
    conditions: list[str] = Field(default_factory=list, max_length=50)
    materials: list[MaterialSpec] = Field(default_factory=list, max_length=100)
    fee: Fee | None = None
    special_procedures: list[SpecialProcedure] = Field(default_factory=list, max_length=20)
    where: str = Field(min_length=1, max_length=500)
    hours: str = Field(min_length=1, max_length=200)
    how: list[Literal["online", "window", "mail"]] = Field(min_length=1)
    visits: int = Field(ge=0, le=10)
    enquiry_phone: str = Field(min_length=1, max_length=32)
    complaint_phone: str = Field(min_length=1, max_length=32)
    branches: dict[BranchName, DepartmentKey] = Field(
        default_factory=dict, max_length=20,
        description="joint approval (并联审批, Art. 26): each branch of the item's workflow definition and the "
                    "department (region code + department number) that handles it")


class ItemWrite(Guide):
    """An item as an administrator writes it; the province code is derived and checked."""

    key: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    region: str = Field(pattern=r"^\d{6}$")
    department: str = Field(pattern=r"^\d{3}$", description="department number within its region")
    item_type: str = Field(pattern=r"^\d{2}$")
    main_item: str = Field(pattern=r"^\d{3}$")
    sub_item: str = Field(default="000", pattern=r"^\d{3}$")
    national_code: str = Field(min_length=12, max_length=12)
    name: Name = Field(min_length=2, max_length=128, description="sent in SOAP documents: blank, invisible or "
                                                                   "control characters are refused")
    level: Level
    kind: Kind
    statutory_limit_days: int = Field(ge=0, le=365)
    promised_limit_days: int = Field(ge=0, le=365)
    national_reporting: bool = False
    applicant_types: list[ApplicantType] = Field(min_length=1)
    departments: list[DepartmentRef] = Field(default_factory=list, max_length=20)
    workflow_id: str = Field(default="standard.v1", pattern=r"^[a-z][a-z0-9_-]{0,55}\.v[1-9][0-9]{0,5}$",
                             description="the versioned workflow definition new cases of the item start with")
    form_schema: dict[str, Any]


class ItemTypeOut(BaseModel):
    code: str
    name: str
    on_application: bool


class DepartmentOut(BaseModel):
    key: str = Field(description="region code + 3-digit department number")
    region: str
    code: str
    name: str
    short_name: str


class ItemSummary(BaseModel):
    code: str = Field(description="province implementing code (18 characters, check last)")
    national_code: str
    key: str
    name: str
    item_type: str
    item_type_name: str
    level: Level
    kind: Kind
    region: str
    region_name: str
    department: DepartmentOut
    promised_limit_days: int
    statutory_limit_days: int
    fee_fen: int | None
    joint: bool


class BranchOut(BaseModel):
    """One department's part of a joint item: its branch of the workflow and the form fields it sees."""

    name: str
    label: str
    department: DepartmentOut
    workflow_id: str | None = Field(description="the branch's own workflow definition")
    fields: list[str] = Field(description="the top-level form fields this department sees (its part of the form)")


class ItemOut(ItemSummary):
    version: int
    workflow_id: str
    branches: list[BranchOut] = Field(
        default_factory=list, description="joint items: the departments approving in parallel after one intake")
    national_reporting: bool
    applicant_types: list[str]
    co_departments: list[DepartmentOut]
    guide: Guide
    form_schema_url: str
    blank_form_url: str


class ItemPage(PageOut):
    items: list[ItemSummary]
