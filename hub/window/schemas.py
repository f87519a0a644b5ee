"""What a service-centre window sends when it registers a paper application (docs/window.md)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.cases.schemas import ApplicantIn, ApplicationReceipt, MaterialOut, StatusOut, StrictModel


class ScannedMaterialIn(StrictModel):
    """One scanned material of the item's list, its bytes base64-encoded (RFC 4648, standard alphabet)."""

    key: str = Field(min_length=1, max_length=64, description="the material's key in the item's list")
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=1, max_length=64, description="application/pdf, image/jpeg, image/png "
                                                                       "or application/ofd")
    content_base64: str = Field(min_length=1, description="the scan's bytes, base64")


class WindowApplicationIn(StrictModel):
    """A paper application as the window registers it: the same fields as an online application (the channel
    is always ``window``) and the scans of the materials handed in."""

    item_code: str = Field(min_length=18, max_length=18)
    applicant: ApplicantIn
    form: dict[str, Any] = Field(default_factory=dict)
    materials: list[ScannedMaterialIn] = Field(default_factory=list, max_length=50)


class WindowCaseOut(StatusOut):
    """The status of a case the window registered, for the window that registered it."""

    channel: str
    region: str = Field(description="the implementing region")
    receiving_region: str | None
    receiving_department: str | None = Field(description="the receiving window's department key")
    receiving_department_name: str | None
    forwarded: bool = Field(description="registered for another region's department (跨域通办)")


class WindowReceipt(ApplicationReceipt):
    """The receipt the window prints for the applicant (tracking number and query code), with what the
    window registered."""

    channel: str
    registered_by: str = Field(description="the window officer's username")
    registered_by_name: str
    receiving_region: str
    receiving_department: str
    receiving_department_name: str
    forwarded: bool = Field(description="the item is implemented in another region: forwarded there (跨域通办)")
    materials_received: list[MaterialOut] = Field(description="the scans stored with the application")
