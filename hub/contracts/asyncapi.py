"""Placeholder; replaced by the generator."""
from __future__ import annotations

from typing import Any


def rendered(*, base_url: str, settings: Any) -> tuple[bytes, str]:
    raise NotImplementedError
