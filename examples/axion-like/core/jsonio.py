"""JSON through orjson (a native extension of tier `minimal`, on amd64 and arm64 alike)."""

from __future__ import annotations

import orjson


def dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str) -> object:
    return orjson.loads(data)
