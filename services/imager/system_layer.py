"""The system layer: a service's Debian packages (its tier's `system_packages` and its own), one
cached directory per architecture and resolved package set, copied to `/` below the tier venv.

Built on the host, for the image's architecture, with no RUN step (so no QEMU and no network in
the build): the base image's dpkg status says what it has (read from the base, never run), the
host's apt resolves and downloads the rest from the operator's mirror (apt_archive.py),
`dpkg-deb -x` unpacks them (deb_layer.py). Same packages, same bytes, same layer digest.

Two caches, both under KILN_IMAGER_WORK_DIR:
- `system/<arch>-<hash>/`: the layer tree, keyed by the exact packages apt chose (name, version,
  architecture) and the base's top-level links: what its bytes depend on. Bounded with the tier
  venvs and artifacts (cache_bound.py, KILN_IMAGER_CACHE_MAX_BYTES).
- `apt/<arch>-<sources>/resolved/<key>.json`: which layer a request gave, keyed by the base image
  id, the sorted package names and the package lists' signed Release files. A warm job reads
  this and never runs apt; when the lists are refreshed (KILN_APT_LISTS_MAX_AGE_S) apt resolves
  again, and a new version of any package (a security update) makes a new layer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.imager.apt_archive import AptArchive, AptPolicy, Resolved, SystemPackagesFailed
from services.imager.deb_layer import build_layer
from services.imager.ports import BaseImageMissing, BaseImageReader
from shared.config import ConfigError, KilnConfig
from shared.config.loader import load_config
from shared.platforms import arch_of

LAYER_FORMAT = "1"  # what goes into a layer, and how: a change here makes new cache entries
TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
Log = Callable[[str], None]


@dataclass(frozen=True)
class SystemRequest:
    packages: tuple[str, ...] = ()  # sorted, each once
    origins: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # package -> config keys

    def keys(self, names: frozenset[str] = frozenset()) -> str:
        """The config keys that name `names` (all packages' keys when empty)."""
        chosen = names or frozenset(self.packages)
        return ", ".join(sorted({key for name in chosen for key in self.origins.get(name, ())}))


def system_request(config: KilnConfig, package: str, service: str, tier: str | None) -> SystemRequest:
    """The union of the tier's and the service's system_packages, as the operator config says."""
    origins: dict[str, list[str]] = {}
    if tier and tier in config.tiers:
        for name in config.tiers[tier].system_packages:
            origins.setdefault(name, []).append(f"tiers.{tier}.system_packages")
    pkg = config.packages.get(package)
    declared = pkg.services.get(service) if pkg else None
    for name in declared.system_packages if declared else ():
        origins.setdefault(name, []).append(f"packages.{package}.services.{service}.system_packages")
    return SystemRequest(tuple(sorted(origins)), {name: tuple(keys) for name, keys in origins.items()})


def requested_packages(
    config_path: str | None, package: str, service: str, tier: str | None
) -> SystemRequest:
    if not config_path:
        return SystemRequest()
    try:
        return system_request(load_config(config_path), package, service, tier)
    except ConfigError as exc:
        raise SystemPackagesFailed(f"the operator config (KILN_CONFIG_PATH) is invalid: {exc}") from None


class SystemLayerCache:
    def __init__(self, root: Path, apt_root: Path, policy: AptPolicy, reader: BaseImageReader):
        self.root, self.apt_root, self.policy, self.reader = root, apt_root, policy, reader

    def prepare(self, request: SystemRequest, base_image: str, platform: str, log: Log) -> Path | None:
        """The layer directory for `request` on `base_image`, built if needed; None when the base
        has every package already."""
        arch = arch_of(platform)
        archive = AptArchive(self.apt_root, arch, self.policy)
        try:
            image_id = self.reader.base_image_id(base_image, platform)
        except BaseImageMissing as exc:
            raise SystemPackagesFailed(f"system packages: {exc}") from None
        with archive.lists(log) as lists:
            memo = (
                archive.dir
                / "resolved"
                / f"{_hash(LAYER_FORMAT, arch, image_id, *request.packages, lists)}.json"
            )
            known = _read_memo(memo)
            if known is not None and (known == "" or (self.root / known).is_dir()):
                return self.root / known if known else None
            status, links = self._base(archive, base_image, platform, image_id)
            try:
                plan = archive.resolve(request.packages, status)
            except SystemPackagesFailed as exc:
                raise SystemPackagesFailed(_refusal(request, exc, platform, self.policy), exc.names) from None
            name = _layer_name(arch, plan, links) if plan else ""
            if plan and not (self.root / name).is_dir():
                self._build(archive, request, plan, status, links, name, platform, log)
            memo.write_text(
                json.dumps({"layer": name, "packages": [p.key() for p in plan]}), encoding="utf-8"
            )
        if not plan:
            log(f"system packages {', '.join(request.packages)}: all in the base image already")
            return None
        return self.root / name

    def _base(self, archive: AptArchive, base_image: str, platform: str, image_id: str):
        """The base's dpkg status (as a file apt reads) and top-level links, cached by image id."""
        stem = archive.dir / "bases" / image_id.replace(":", "-")
        status, links = stem.with_suffix(".status"), stem.with_suffix(".links.json")
        if not status.is_file() or not links.is_file():
            try:
                facts = self.reader.base_image_facts(base_image, platform, TOP_DIRS)
            except BaseImageMissing as exc:
                raise SystemPackagesFailed(f"system packages: {exc}") from None
            # `/usr/lib` or `usr/lib`: the same for a top-level link (docker says the one, buildah the other)
            top = {name: target.lstrip("/") for name, target in facts.top_links.items()}
            links.write_text(json.dumps(top, sort_keys=True), encoding="utf-8")
            status.write_bytes(facts.dpkg_status)
        return status, json.loads(links.read_text(encoding="utf-8"))

    def _build(self, archive, request, plan: list[Resolved], status, links, name, platform, log) -> None:
        started = time.monotonic()
        for package in plan:
            if package.replaces_version:
                log(f"{package.name} {package.version} replaces the base image's {package.replaces_version}")
        asked = ", ".join(request.packages)
        log(f"system layer {name}: {len(plan)} packages to unpack ({asked} and their dependencies)")
        self.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        try:
            debs = archive.download(request.packages, status, work / "debs")
            if len(debs) != len(plan):
                raise SystemPackagesFailed(
                    f"apt downloaded {len(debs)} packages where it resolved {len(plan)}"
                )
            tree = work / "root"
            tree.mkdir(mode=0o755)
            tree.chmod(0o755)  # the image's / : whatever the worker's umask
            build_layer(debs, tree, work, base_links=links, platform=platform, log=log)
            try:
                tree.rename(self.root / name)  # atomic: a whole layer or none, for every worker here
            except OSError:
                if not (self.root / name).is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        took = time.monotonic() - started
        log(f"system layer {name}: {_bytes(self.root / name) / 1e6:.1f} MB in {took:.1f} s")


def _bytes(tree: Path) -> int:
    """What the layer holds: each file once (Mesa's drivers are hard links of one file)."""
    sizes = {}
    for path in tree.rglob("*"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            sizes[info.st_ino] = info.st_size
    return sum(sizes.values())


def _layer_name(arch: str, plan: list[Resolved], links: Mapping[str, str]) -> str:
    layout = json.dumps(dict(sorted(links.items())))
    return f"{arch}-{_hash(LAYER_FORMAT, arch, layout, *(p.key() for p in plan))}"


def _refusal(request: SystemRequest, failure: SystemPackagesFailed, platform: str, policy: AptPolicy) -> str:
    names = sorted(failure.names) or list(request.packages)
    return (
        f"system packages {', '.join(repr(n) for n in names)} ({request.keys(failure.names)}) cannot be "
        f"installed for {platform} from KILN_APT_SOURCES={policy.sources}: check the names "
        f"(https://packages.debian.org) and the base image's release. apt said:\n{failure}"
    )


def _read_memo(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["layer"]
    except (OSError, ValueError, KeyError):
        return None


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
