"""FastAPI dependencies: the request's session, clock, settings and signed-in officer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from hub.auth import service as auth_service
from hub.auth.models import Officer
from hub.clock import Clock
from hub.db import wrote
from hub.errors import Unauthorized
from hub.settings import Settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


# The light dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the
# thread pool, and a hop there per dependency cost more than the rest of a submission's Python work.


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work: committed once when the endpoint returns, rolled back when it raises.

    Used with ``scope="function"`` (``SessionDep``): the exit runs when the endpoint has returned and its
    answer is serialised, before anything is sent, so a failing COMMIT becomes the error answer (a
    problem document) instead of a success for something that was never stored. Routers and services
    never commit; work that must follow a commit runs from a flow (hub/<domain>/flows.py), and writes that
    must survive a failed request from ``hub.db.separate_unit_of_work``."""
    # Making a session does no I/O (a connection is taken on first use, in the endpoint's thread).
    session: Session = request.app.state.session_factory()
    try:
        yield session
        if wrote(session):
            # The COMMIT waits for the disk: in the thread pool, never on the event loop. A request that
            # only read (or whose flow committed already) skips it and the hop.
            await run_in_threadpool(session.commit)
    except BaseException:
        # Explicitly: after a failed COMMIT, closing alone would hand the pool a connection still inside
        # the transaction, and the next request on it would see (and could commit) these writes.
        session.rollback()
        raise
    finally:
        # A read's transaction is rolled back here. After a commit or a rollback this does no I/O.
        session.close()


@contextmanager
def request_unit_of_work(request: Request) -> Iterator[Session]:
    """``get_session`` for the one endpoint that takes no dependency at all, the online submission (each
    dependency FastAPI solves costs a request more than the work of the dependency itself): the same unit
    of work — committed once when the block ends, only if something was written, rolled back when it raises,
    closed — entered and left in the (sync) endpoint's own thread, so the COMMIT needs no hop of its own and
    a failing COMMIT still becomes the error answer. Only for a plain ``def`` endpoint: it blocks."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
        if wrote(session):
            session.commit()
    except BaseException:
        session.rollback()  # also after a failed COMMIT (see get_session)
        raise
    finally:
        session.close()


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    """For the few writes that must survive the request failing (``hub.db.separate_unit_of_work``)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_now(clock: Annotated[Clock, Depends(get_clock)]) -> datetime:
    return clock.now()


# One session per request: every user of it names this same dependency (same scope), so FastAPI makes it once.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]


def current_officer(
    session: SessionDep,
    settings: Annotated[Settings, Depends(get_settings)],
    now: Annotated[datetime, Depends(get_now)],
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Officer:
    if not token:
        raise Unauthorized()
    return auth_service.officer_from_token(
        session, token=token, secret=settings.secret_key, now=now
    )


NowDep = Annotated[datetime, Depends(get_now)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OfficerDep = Annotated[Officer, Depends(current_officer)]
