"""Process settings: one BaseSettings per service on this shared base, read once at start-up.

Settings are about *where* things are (broker, database, registry credentials); the pipeline's
config.yaml (shared.config) is about *what* to build. Every variable is `KILN_<NAME>`.
Nothing else in Kiln reads os.environ.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values people leave in example files; a service refuses to start with one of them as a secret.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "changethis", "secret", "password", "xxx", "todo", "example", "admin"}
)
# A secret someone must not guess: 32 bytes is what `openssl rand -hex 16` or `secrets.token_hex(16)` gives.
MIN_SECRET_BYTES = 32
GENERATE_HINT = "generate one with `openssl rand -hex 32`"


def _is_secret(annotation: Any) -> bool:
    return annotation in (SecretStr, SecretStr | None)


class KilnSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", extra="ignore", frozen=True)

    # Secrets this process checks callers against (an API token, webhook HMAC keys): Kiln decides
    # how strong they are, so an empty or short one is refused at start-up. Credentials a process
    # only presents to other systems (registry password, git token, SMTP password) are as long as
    # those systems make them (a mail provider's app password may have 16 characters); an empty one
    # means unset, because compose can only pass an optional variable it has no value for as "".
    VERIFIED_SECRETS: ClassVar[frozenset[str]] = frozenset()

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

    @field_validator("*", mode="before")
    @classmethod
    def _empty_credential_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        field = cls.model_fields.get(name)
        optional_credential = field is not None and _is_secret(field.annotation)
        if optional_credential and name not in cls.VERIFIED_SECRETS and isinstance(value, str):
            return value if value.strip() else None
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_weak_verified_secrets(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name in cls.VERIFIED_SECRETS and isinstance(value, SecretStr):
            size = len(value.get_secret_value().strip().encode())
            if size == 0:
                # `${X:-}` in a compose file: the operator forgot it; an empty key authenticates anyone.
                raise ValueError(
                    f"is set but empty; unset it or set at least {MIN_SECRET_BYTES} bytes ({GENERATE_HINT})"
                )
            if size < MIN_SECRET_BYTES:
                raise ValueError(
                    f"is {size} bytes long; at least {MIN_SECRET_BYTES} are needed ({GENERATE_HINT})"
                )
        return value

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
            if _is_secret(field.annotation) and getattr(self, name) is not None
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
