"""FastAPI dependencies: the request's session, clock, settings and signed-in officer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from hub.auth import service as auth_service
from hub.auth.models import Officer
from hub.clock import Clock
from hub.errors import Unauthorized
from hub.settings import Settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        # Routers commit explicitly; anything left uncommitted here is abandoned on purpose.
        session.rollback()
        session.close()


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_now(clock: Annotated[Clock, Depends(get_clock)]) -> datetime:
    return clock.now()


def current_officer(
    session: Annotated[Session, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
    now: Annotated[datetime, Depends(get_now)],
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Officer:
    if not token:
        raise Unauthorized()
    return auth_service.officer_from_token(
        session, token=token, secret=settings.secret_key, now=now
    )


SessionDep = Annotated[Session, Depends(get_session)]
NowDep = Annotated[datetime, Depends(get_now)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OfficerDep = Annotated[Officer, Depends(current_officer)]
