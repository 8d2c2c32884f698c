"""Bar charts as PNG bytes, drawn with Pillow."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

BAR_COLOUR = (46, 125, 50)


def bar_chart(values: dict[str, float], width: int = 320, height: int = 120) -> bytes:
    """One bar per value (0-100), left to right in the given order."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    slot = width // max(1, len(values))
    for index, value in enumerate(values.values()):
        top = height - int(height * max(0.0, min(100.0, value)) / 100.0)
        draw.rectangle([index * slot + 2, top, (index + 1) * slot - 2, height - 1], fill=BAR_COLOUR)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size
