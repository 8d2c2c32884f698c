"""Where the CLI finds the gateway: KILN_GATEWAY_URL and KILN_TOKEN, read once."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", extra="ignore", frozen=True)

    gateway_url: str = "http://127.0.0.1:8000"
    token: SecretStr | None = None
