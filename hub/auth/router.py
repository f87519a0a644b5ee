from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from hub.auth import service
from hub.auth.models import Officer
from hub.auth.schemas import OfficerCreate, OfficerOut, TokenOut
from hub.db import separate_unit_of_work
from hub.deps import NowDep, OfficerDep, SessionDep, SessionFactoryDep, SettingsDep
from hub.problems import problem_responses
from hub.throttle import service as throttle
from hub.throttle.http import source_address

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut, responses=problem_responses(401, 422, 429))
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    now: NowDep,
) -> TokenOut:
    """OAuth2 password flow for officers: a short-lived bearer token.

    After too many failed sign-ins for the account or from the source address within the window, 429
    with ``Retry-After`` (the right password included) until the window ends."""
    address = source_address(request)
    with separate_unit_of_work(factory) as attempts:  # committed now: it counts even if the password is wrong
        verdict = throttle.begin_login(attempts, username=form.username, address=address, settings=settings,
                                       now=now)
    verdict.raise_if_blocked()
    officer = service.authenticate(session, username=form.username, password=form.password)
    throttle.login_succeeded(session, username=form.username, address=address, settings=settings)
    token = service.issue_token(
        officer, secret=settings.secret_key, now=now, ttl_minutes=settings.token_ttl_minutes
    )
    return TokenOut(access_token=token.access_token, expires_in=token.expires_in)


@router.get("/me", response_model=OfficerOut, responses=problem_responses(401))
def me(officer: OfficerDep) -> OfficerOut:
    return officer_out(officer)


@router.post("/officers", response_model=OfficerOut, status_code=201,
             responses=problem_responses(401, 403, 409, 422))
def add_officer(body: OfficerCreate, officer: OfficerDep, session: SessionDep, now: NowDep) -> OfficerOut:
    """An administrator adds an officer of a department in his region or below (issue 13: a bootstrapped hub
    has only its administrator). 409 for a username that exists; 422 naming the field for an unknown department
    or the published demo password."""
    created = service.add_officer(session, admin=officer, username=body.username, name=body.name,
                                  region=body.region, department=body.department, roles=body.roles,
                                  password=body.password, now=now)
    return officer_out(created)


def officer_out(officer: Officer) -> OfficerOut:
    return OfficerOut(
        username=officer.username, name=officer.name, region=officer.region_code,
        department=officer.department.key, department_name=officer.department.name,
        roles=officer.roles,
    )
