"""Validators built from pydantic-core schemas directly: no classes, so nothing depends on how
Cython compiles annotations."""

from __future__ import annotations

from pydantic_core import SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

CHANNELS = ("sms", "web", "mqtt", "email")

_MESSAGE = SchemaValidator(
    cs.typed_dict_schema(
        {
            "channel": cs.typed_dict_field(cs.literal_schema(list(CHANNELS))),
            "recipient": cs.typed_dict_field(cs.str_schema(min_length=1, max_length=64)),
            "body": cs.typed_dict_field(cs.str_schema(max_length=1600)),
            "priority": cs.typed_dict_field(cs.int_schema(ge=0, le=9), required=False),
        }
    )
)
_CONTACT = SchemaValidator(
    cs.typed_dict_schema(
        {
            "name": cs.typed_dict_field(cs.str_schema(min_length=1, max_length=120, strip_whitespace=True)),
            "phone": cs.typed_dict_field(cs.str_schema(pattern=r"^\+?[0-9]{6,15}$")),
            "email": cs.typed_dict_field(cs.nullable_schema(cs.str_schema(pattern=r"^[^@\s]+@[^@\s]+$"))),
        }
    )
)


class Invalid(ValueError):
    """Input that does not fit a schema; the message names each bad field."""


def _validated(validator: SchemaValidator, what: str, data: object, raw: bool) -> dict:
    try:
        return validator.validate_json(data) if raw else validator.validate_python(data)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors())
        raise Invalid(f"invalid {what}: {fields}") from None


def message(data: object) -> dict:
    return _validated(_MESSAGE, "message", data, raw=False)


def message_json(raw: bytes) -> dict:
    return _validated(_MESSAGE, "message", raw, raw=True)


def contact(data: object) -> dict:
    return _validated(_CONTACT, "contact", data, raw=False)
