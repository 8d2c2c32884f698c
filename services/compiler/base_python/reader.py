"""The CPython a package's images will run, per platform, read from its base image: version and
ABI from the image's own files, headers from the image when it ships them, else from the
operator's headers images (KILN_PYTHON_HEADERS_IMAGES_<ARCH>), else from the compiler host
(Debian's `libpython3.X-dev:<arch>`, or the compiler's own interpreter for its own platform and
version). Every refusal names the key the base image came from and what to do.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from services.compiler.engine.cc import host_platform
from services.compiler.engine.target import (
    TargetPython,
    check_cython_supports,
    debian_headers,
    headers_digest,
    interpreter_headers,
)
from shared.bus.live_logs import LineSink, discard
from shared.platforms import parse
from shared.registry import RegistryError

from .layers import ImageFiles, UnreadableLayer
from .python_files import export_headers, find_headers, find_python, free_threaded, want
from .registry_image import ImageUnreadable, PlatformImage, Registries, check_platform
from .store import ImageStore


class BasePythonError(ValueError):
    """A base image whose Python cannot be compiled for; the message names the key to change."""


@dataclass(frozen=True)
class BaseImage:
    platform: str
    reference: str
    key: str  # where it was configured: `packages.demo.deployment.base_images.linux/arm64`, …


def headers_key(platform: str) -> str:
    return f"KILN_PYTHON_HEADERS_IMAGES_{parse(platform).arch.upper()}"


class BasePythonReader:
    def __init__(
        self, registries: Registries, store: ImageStore, headers_images: Mapping[str, tuple[str, ...]]
    ):
        self._registries = registries
        self._store = store
        self._headers_images = headers_images

    @contextlib.contextmanager
    def held(
        self, bases: Mapping[str, BaseImage], log: LineSink = discard
    ) -> Iterator[dict[str, TargetPython]]:
        """The target of each platform; the headers stay on disk until the context ends."""
        with ExitStack() as stack:
            yield {platform: self._target(base, stack, log) for platform, base in bases.items()}

    def _target(self, base: BaseImage, stack: ExitStack, log: LineSink) -> TargetPython:
        started = time.perf_counter()
        where = f"{base.key}: base image {base.reference} ({base.platform})"
        entry_dir, entry = self._entry(base.reference, base.platform, stack, where)
        python = entry.get("python")
        if python is None:
            raise BasePythonError(
                f"{where} has no Python Kiln's images could run: {entry['no_python']}. Use an image with "
                "python3 (Debian's python3, or a python:3.X image)"
            )
        version, soabi = python["version"], python["soabi"]
        try:
            warning = check_cython_supports(version)
        except ValueError as exc:
            raise BasePythonError(f"{where} has Python {version}: {exc}") from None
        include_dirs, digest, origin = self._headers(base, version, soabi, (entry_dir, entry), stack, where)
        target = TargetPython(version, soabi, include_dirs, digest, origin)
        took = (time.perf_counter() - started) * 1000
        log(f"{base.platform}: {base.reference} runs CPython {version} ({soabi}); headers from {origin}")
        log(f"{base.platform}: base image read in {took:.0f} ms ({'cached' if entry['cached'] else 'cold'})")
        if warning:
            log(f"{base.platform}: {warning}")
        return target

    def _entry(self, reference: str, platform: str, stack: ExitStack, where: str) -> tuple[Path, dict]:
        try:
            image = self._registries.open(reference, platform)
            return stack.enter_context(self._store.held(image.digest, lambda d: _read(image, platform, d)))
        except (RegistryError, ImageUnreadable, UnreadableLayer) as exc:
            raise BasePythonError(f"{where} cannot be read: {exc}") from None

    def _headers(
        self,
        base: BaseImage,
        version: str,
        soabi: str,
        found: tuple[Path, dict],
        stack: ExitStack,
        where: str,
    ) -> tuple[tuple[str, ...], str, str]:
        """(include dirs, their digest, where they came from) for CPython `version`/`soabi`."""
        wanted = f"python{version}" + ("t" if soabi.split("-")[1].endswith("t") else "")
        entry_dir, entry = found
        if wanted in entry["headers"]:
            return _exported(entry_dir, entry, wanted, f"the base image {base.reference}")
        key = headers_key(base.platform)
        for reference in self._headers_images.get(base.platform, ()):
            headers_dir, headers = self._entry(
                reference, base.platform, stack, f"{key}: headers image {reference}"
            )
            if wanted in headers["headers"]:
                return _exported(headers_dir, headers, wanted, f"the headers image {reference}")
        triplet = parse(base.platform).triplet
        host = debian_headers(version, triplet)
        origin = f"the compiler host's /usr/include ({parse(base.platform).python_headers_package(version)})"
        if host is None and base.platform == host_platform():
            host, origin = interpreter_headers(version), "the compiler's own interpreter"
        if host is not None and free_threaded(_pyconfig(host)) == wanted.endswith("t"):
            return host, headers_digest(host), origin
        raise BasePythonError(
            f"{where} has Python {version} ({soabi}) but no headers for it (Debian's python3, for one, "
            f"ships none), and neither {key} nor the compiler host has them. Set {key} to an image holding "
            f"include/{wanted} for {base.platform} (docs/compiler.md, 'Target Python'), install "
            f"{parse(base.platform).python_headers_package(version)} on the compiler host, or use a base "
            f"image that ships its headers (python:{version}-slim)"
        )


def _exported(entry_dir: Path, entry: dict, wanted: str, origin: str) -> tuple[tuple[str, ...], str, str]:
    headers = entry["headers"][wanted]
    return (str(entry_dir / headers["dir"]),), headers["digest"], origin


def _pyconfig(include_dirs: tuple[str, ...]) -> bytes:
    """The platform's pyconfig.h: the last directory's (Debian's multiarch one comes last)."""
    return (Path(include_dirs[-1]) / "pyconfig.h").read_bytes()


def _read(image: PlatformImage, platform: str, directory: Path) -> dict:
    """Fill a cache entry: the image's Python (or why it has none) and every complete header set."""
    started = time.perf_counter()
    config = image.config()
    check_platform(config, platform)
    spool = directory / ".spool"
    spool.mkdir()
    files = ImageFiles(spool, want)
    image.read_into(files, spool)
    triplet = parse(platform).triplet
    python, reason = None, None
    try:
        python = asdict(find_python(files, _path_env(config), triplet))
    except ValueError as exc:  # NoPython included
        reason = str(exc)
    headers = {}
    for found in find_headers(files, triplet):
        exported = export_headers(files, found, directory / "include")
        headers[found.directory] = {
            "dir": f"include/{found.directory}",
            "digest": headers_digest((str(exported),)),
            "free_threaded": free_threaded((exported / "pyconfig.h").read_bytes()),
        }
    shutil.rmtree(spool)
    layers = image.manifest.get("layers", [])
    return {
        "image": f"{image.name.host}/{image.name.repository}@{image.digest}",
        "platform": platform,
        "python": python,
        "no_python": reason,
        "headers": headers,
        "layers": len(layers),
        "layer_bytes": sum(int(layer.get("size", 0)) for layer in layers),
        "read_ms": int((time.perf_counter() - started) * 1000),
    }


def _path_env(config: dict) -> str | None:
    for variable in (config.get("config") or {}).get("Env") or []:
        if isinstance(variable, str) and variable.startswith("PATH="):
            return variable.removeprefix("PATH=")
    return None
