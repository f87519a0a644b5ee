"""Mock tax-registration registry (税务登记信息): SOAP 1.1, contract schemas/soap/tax.v1.wsdl."""

from __future__ import annotations

from fastapi import FastAPI
from lxml import etree

from mocks.registries.checks import is_credit_code
from mocks.registries.seed import Seed
from mocks.registries.service import build_soap_app
from mocks.registries.soap import SoapContract, SoapFault
from mocks.server import MockServer

PATH = "/tax"
CONTRACT = SoapContract("tax.v1.wsdl", "tax.v1.xsd")


def create_app(server: MockServer, seed: Seed) -> FastAPI:
    contract = CONTRACT
    ns = contract.namespace

    def get_tax_registration(payload: etree._Element) -> etree._Element:
        code = payload.findtext(f"{{{ns}}}creditCode") or ""
        if not is_credit_code(code):
            raise SoapFault("Client", "INVALID_REQUEST",
                            "统一社会信用代码校验错误 (creditCode fails the GB 32100 check)")
        org = seed.organisation(code)
        if org is None:
            raise SoapFault("Client", "NOT_FOUND", "未查到税务登记 (no tax registration for this credit code)")
        return contract.element("GetTaxRegistrationResponse", {
            "creditCode": org.credit_code,
            "taxpayerName": org.name,
            "registrationStatus": org.tax_status,
            "taxOffice": org.tax_office,
            "creditGrade": org.credit_grade,
            "arrears": "true" if org.arrears else "false",
        })

    return build_soap_app(server, contract, PATH, {"GetTaxRegistration": get_tax_registration},
                          "Mock tax-registration registry (SOAP)")
