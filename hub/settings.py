"""The one settings object: every knob comes from a ``HUB_`` environment variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-secret-change-me-in-production-0123456789"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""
    amqp_url: str | None = None

    secret_key: str = DEV_SECRET
    token_ttl_minutes: int = Field(default=30, ge=1, le=24 * 60)

    max_material_bytes: int = 10 * 1024 * 1024
    material_content_types: tuple[str, ...] = (
        "application/pdf",
        "image/jpeg",
        "image/png",
        "application/ofd",
    )
    max_materials_per_case: int = 50

    log_json: bool = True
    log_level: str = "INFO"

    public_base_url: str = "http://127.0.0.1:8000"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hub.db').as_posix()}"

    @property
    def materials_dir(self) -> Path:
        return self.data_dir / "materials"


@lru_cache
def get_settings() -> Settings:
    return Settings()
