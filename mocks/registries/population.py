"""Mock population registry (公安人口信息库): SOAP 1.1, contract schemas/soap/population.v1.wsdl."""

from __future__ import annotations

from fastapi import FastAPI
from lxml import etree

from mocks.registries.checks import is_citizen_id
from mocks.registries.seed import Seed
from mocks.registries.service import build_soap_app
from mocks.registries.soap import SoapContract, SoapFault
from mocks.server import MockServer

PATH = "/population"
CONTRACT = SoapContract("population.v1.wsdl", "population.v1.xsd")


def _id_number(contract: SoapContract, payload: etree._Element) -> str:
    number = payload.findtext(f"{{{contract.namespace}}}idNumber") or ""
    # The XSD checks the shape; the check character needs arithmetic the XSD cannot express.
    if not is_citizen_id(number):
        raise SoapFault("Client", "INVALID_REQUEST",
                        "身份证号码校验错误 (idNumber fails the GB 11643 birth-date or check-character rule)")
    return number


def create_app(server: MockServer, seed: Seed) -> FastAPI:
    contract = CONTRACT
    ns = contract.namespace

    def verify_identity(payload: etree._Element) -> etree._Element:
        number = _id_number(contract, payload)
        name = (payload.findtext(f"{{{ns}}}name") or "").strip()
        person = seed.person(number)
        if person is None:
            return contract.element("VerifyIdentityResponse", {"match": "false", "status": "notFound"})
        match = "true" if person.name == name else "false"
        return contract.element("VerifyIdentityResponse", {"match": match, "status": person.status})

    def lookup_person(payload: etree._Element) -> etree._Element:
        person = seed.person(_id_number(contract, payload))
        if person is None:
            raise SoapFault("Client", "NOT_FOUND", "查无此人 (no person is registered under this ID number)")
        return contract.element("LookupPersonResponse", {
            "name": person.name,
            "gender": person.gender,
            "birthDate": person.birth_date.isoformat(),
            "registeredAddress": person.registered_address,
            "status": person.status,
            "photoDigest": person.photo_digest,
        })

    handlers = {"VerifyIdentity": verify_identity, "LookupPerson": lookup_person}
    return build_soap_app(server, contract, PATH, handlers, "Mock population registry (SOAP)")
