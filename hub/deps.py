"""FastAPI dependencies: the request's session, clock, settings and signed-in officer."""

from __future__ import annotations

from collections.abc import AsyncIterator
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


# The light dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the
# thread pool, and a hop there per dependency cost more than the rest of a submission's Python work.


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Making a session does no I/O (a connection is taken on first use, in the endpoint's thread).
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        # Routers commit explicitly; anything left uncommitted is abandoned on purpose. After a commit
        # this does no I/O; after a failed request the rollback is brief and keeps the pool clean.
        session.close()


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_now(clock: Annotated[Clock, Depends(get_clock)]) -> datetime:
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
