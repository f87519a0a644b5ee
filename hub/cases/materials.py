"""Application materials: checked for size and type, stored content-addressed by SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.cases.models import Case, Material
from hub.errors import Conflict, FieldError, HubError, PayloadTooLarge, ValidationFailed
from hub.settings import Settings
from workflow.registry import get_definition

SIGNATURES = {
    "application/pdf": (b"%PDF-",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "application/ofd": (b"PK\x03\x04",),
}
SAFE_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff]+")


def add_material(
    session: Session,
    *,
    case: Case,
    key: str,
    filename: str,
    content_type: str,
    content: bytes,
    purpose: str,
    settings: Settings,
    now: datetime,
) -> Material:
    _check_allowed(session, case, key, settings)
    _check_content(content, content_type, settings)
    digest = hashlib.sha256(content).hexdigest()
    _store(settings.materials_dir, digest, content)
    material = Material(
        case_id=case.id, material_key=key, filename=_safe_filename(filename),
        content_type=content_type, size=len(content), sha256=digest, purpose=purpose,
        uploaded_at=now,
    )
    session.add(material)
    session.flush()  # its id is in the answer; the request commits it
    return material


def _check_allowed(session: Session, case: Case, key: str, settings: Settings) -> None:
    if get_definition(case.workflow_id).is_terminal(case.state):
        raise Conflict("办件已结束，不能再提交材料 (case is closed)")
    keys = {m["key"] for m in case.item.guide.get("materials", [])}
    if key not in keys:
        allowed = ", ".join(sorted(keys)) or "（无）"
        raise ValidationFailed([FieldError("key", "material_listed", f"材料不在事项材料清单中；可选：{allowed}")])
    count = session.scalar(select(func.count()).where(Material.case_id == case.id)) or 0
    if count >= settings.max_materials_per_case:
        raise ValidationFailed([FieldError("file", "max_materials", "材料数量已达上限")])


def _check_content(content: bytes, content_type: str, settings: Settings) -> None:
    if len(content) > settings.max_material_bytes:
        limit_mib = settings.max_material_bytes // (1024 * 1024)
        raise PayloadTooLarge(f"单个材料不得超过 {limit_mib} MiB (file too large)")
    if not content:
        raise ValidationFailed([FieldError("file", "not_empty", "文件为空")])
    if content_type not in settings.material_content_types:
        raise HubError(
            detail=f"只接受 {', '.join(settings.material_content_types)} (unsupported type)",
            title="文件类型不支持", status=415, type_slug="unsupported-media-type",
            errors=[FieldError("file", "content_type", "文件类型不支持")],
        )
    if not content.startswith(SIGNATURES.get(content_type, (b"",))):
        raise ValidationFailed(
            [FieldError("file", "content_matches_type", "文件内容与声明的类型不符")]
        )


def _store(root: Path, digest: str, content: bytes) -> None:
    """Content-addressed, written whole or not at all, safe for any number of writers on one filesystem (the
    api replicas and workers share the `hub-data` volume): each writes its own temporary file in the target's
    folder, flushes it to disk and renames it over the target — the same bytes under the same name, whoever
    renames last. A file already there with the right size is kept."""
    target = root / digest[:2] / digest
    if _complete(target, len(content)):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: the pid alone is not (every container's main process may be pid 1, and one process
    # serves uploads from several threads); writers sharing a temporary file made the second rename fail.
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{digest}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before its name is: the case row commits right after
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _complete(target: Path, size: int) -> bool:
    try:
        return target.stat().st_size == size
    except FileNotFoundError:
        return False


def _sync_folder(folder: Path) -> None:
    """The rename itself on disk (POSIX: a directory's entries are synced through the directory)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _safe_filename(filename: str) -> str:
    name = SAFE_NAME.sub("_", Path(filename or "material").name)[:200]
    return name or "material"
