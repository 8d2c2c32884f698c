"""Base62 short codes of record numbers, and the URLs a short link may point to."""

from __future__ import annotations

from urllib.parse import urlsplit

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def encode(number: int) -> str:
    if number < 0:
        raise ValueError("codes are of non-negative numbers")
    digits = []
    while True:
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
        if number == 0:
            return "".join(reversed(digits))


def decode(code: str) -> int:
    number = 0
    for char in code:
        index = ALPHABET.find(char)
        if index < 0:
            raise ValueError(f"{code!r} is not a short code")
        number = number * len(ALPHABET) + index
    return number


def checked_target(url: str) -> str:
    """Only absolute http(s) URLs: a `javascript:` link would run in whoever follows it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"a link must point to an http(s) URL, not {url!r}")
    return url
