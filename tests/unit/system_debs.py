"""Small real .deb files for the system layer's tests, built with `dpkg-deb --build`."""

from __future__ import annotations

import subprocess
from pathlib import Path

Files = dict[str, "bytes | tuple[bytes, int] | str"]  # path -> content, (content, mode) or "->target"


def make_deb(
    out: Path, name: str, files: Files, *, version: str = "1.0-1", postinst: str | None = None,
    arch: str = "amd64",
) -> Path:  # fmt: skip
    root = out / f"src-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN").chmod(0o755)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Kiln <kiln@example.com>\n"
        f"Description: a test package\n"
    )
    if postinst is not None:
        script = root / "DEBIAN" / "postinst"
        script.write_text(postinst)
        script.chmod(0o755)
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            target.symlink_to(content[2:])
            continue
        data, mode = content if isinstance(content, tuple) else (content, 0o644)
        target.write_bytes(data)
        target.chmod(mode)
    deb = out / f"{name}_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        check=True, capture_output=True,
    )  # fmt: skip
    return deb
