"""The trimmed package config Kiln mounts at $KILN_CONFIG, and the paths a service may write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core import jsonio


def load_service_config() -> dict:
    """The mounted config (JSON), or {} when not mounted (the image proof runs without one)."""
    path = os.environ.get("KILN_CONFIG")
    if not path or not Path(path).is_file():
        return {}
    loaded = jsonio.loads(Path(path).read_bytes())
    return loaded if isinstance(loaded, dict) else {}


def service_port(config: dict, service: str, default: int) -> int:
    """$PORT (the image and the deployer set it), else the config's port, else `default`."""
    configured = config.get("services", {}).get(service, {}).get("port")
    return int(os.environ.get("PORT") or configured or default)


def feature_enabled(config: dict, name: str, default: bool = True) -> bool:
    return bool(config.get("features", {}).get(name, default))


def writable_dir(variable: str, name: str) -> Path:
    """The directory named by $variable (a mounted volume when deployed), else one under /tmp.

    The image proof runs the service with a read-only root, no volume and only /tmp writable,
    so a service must start without its volume."""
    wanted = os.environ.get(variable)
    for candidate in ([Path(wanted)] if wanted else []) + [Path(tempfile.gettempdir()) / name]:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
            return candidate
        except OSError:
            continue
    raise RuntimeError(f"no writable directory for {variable} (nor /tmp/{name})")
