"""Process settings: one BaseSettings per service on this shared base, read once at start-up.

Settings are about *where* things are (broker, database, registry credentials); the pipeline's
config.yaml (shared.config) is about *what* to build. Every variable is `KILN_<NAME>`.
Nothing else in Kiln reads os.environ.
"""

from __future__ import annotations

import sys
from typing import Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values people leave in example files; a service refuses to start with one of them as a secret.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "changethis", "secret", "password", "xxx", "todo", "example", "admin"}
)


class KilnSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", extra="ignore", frozen=True)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "mysql+pymysql://root@127.0.0.1:3306/kiln"
    log_level: str = "INFO"
    log_format: str = Field("text", pattern="^(text|json)$")
    config_path: str | None = Field(None, description="the pipeline config.yaml")
    registry_url: str = "127.0.0.1:5000"
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    # Registries reached without TLS besides loopback, `host[:port],…` (shared.registry.transport).
    registry_insecure_hosts: str = ""
    instance: str | None = Field(None, description="name of this process in logs and queue names")
    health_port: int | None = Field(None, description="workers answer /healthz and /readyz here")
    # First back-off of a failed handler (doubling, capped at 60 s, 8 retries): the retry budget.
    retry_base_delay_s: float = Field(1.0, gt=0, le=60)
    # Repository code runs only in the sandbox (shared/sandbox.py). True lets it run unconfined
    # where no sandbox can be created: the operator's explicit choice, logged on every such run.
    allow_unsandboxed: bool = False

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        for name, value in self.secret_values().items():
            if value.strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"KILN_{name.upper()} is a placeholder ({value!r}); set a real secret")
        return self

    def secret_values(self) -> dict[str, str]:
        """Every secret this settings object holds, by field name (also feeds log redaction)."""
        return {
            name: getattr(self, name).get_secret_value()
            for name, field in type(self).model_fields.items()
            if field.annotation in (SecretStr, SecretStr | None) and getattr(self, name) is not None
        }


SettingsT = TypeVar("SettingsT", bound=KilnSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read settings or exit 2 naming every bad variable: a service never starts half-configured."""
    try:
        return cls()
    except ValidationError as exc:
        lines = [f"invalid settings for {cls.__name__}:"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  KILN_{where.upper()}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
