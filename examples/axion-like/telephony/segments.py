"""How many SMS segments a text costs: GSM-7 (160, or 153 per part) else UCS-2 (70, or 67)."""

from __future__ import annotations

GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€")  # two septets each


def encoding(text: str) -> str:
    return "GSM-7" if all(c in GSM7 or c in GSM7_EXTENDED for c in text) else "UCS-2"


def units(text: str) -> int:
    if encoding(text) == "GSM-7":
        return sum(2 if c in GSM7_EXTENDED else 1 for c in text)
    return len(text.encode("utf-16-be")) // 2


def segments(text: str) -> int:
    single, part = (160, 153) if encoding(text) == "GSM-7" else (70, 67)
    count = units(text)
    return 1 if count <= single else -(-count // part)
