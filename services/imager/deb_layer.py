"""A system layer's files from downloaded .debs: `dpkg-deb -x`, never a maintainer script.

What the maintainer scripts would have done that matters for running is done here instead:
`update-alternatives` links (alternatives.py: ImageMagick's /usr/bin/convert). ldconfig is not
needed: libraries land in the loader's default directories (/usr/lib/<triplet>, which the
loader searches without a cache); a package that adds another directory through
/etc/ld.so.conf.d is named in the job log. The rest (font, icon, schema caches; users and
groups; services) is not done: a program finds fonts without fontconfig's cache, more slowly.

Each package gets a `/var/lib/dpkg/status.d/<name>` entry (its control fields, as distroless
images do), so a scanner that reads dpkg's database (Trivy) sees the packages the layer added;
the base image's own /var/lib/dpkg/status is left as it is.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from services.imager.alternatives import Alternative, apply, choose, install_calls
from services.imager.apt_archive import APT_PATH, SystemPackagesFailed
from services.imager.layer_tree import LayerPathError, LayerTree
from shared import platforms

Log = Callable[[str], None]


def build_layer(
    debs: list[Path], root: Path, work: Path, *, base_links: Mapping[str, str], platform: str, log: Log
) -> list[str]:
    """Unpack `debs` (in name order: the same packages give the same tree) into `root`; returns the
    packages' names."""
    work.mkdir(parents=True, exist_ok=True)
    tree = LayerTree(root, base_links)
    alternatives: list[Alternative] = []
    names = []
    for deb in sorted(debs, key=lambda path: path.name):
        unpacked, control = work / "unpack", work / "control"
        _dpkg_deb("-x", deb, unpacked)
        _dpkg_deb("-e", deb, control)
        fields = (control / "control").read_text(encoding="utf-8", errors="replace")
        name = _field(fields, "Package") or deb.name.split("_", 1)[0]
        try:
            tree.merge(unpacked)
        except LayerPathError as exc:
            raise SystemPackagesFailed(f"{deb.name}: {exc}") from None
        tree.write(f"/var/lib/dpkg/status.d/{name}", status_entry(fields).encode())
        postinst = control / "postinst"
        if postinst.is_file():
            found, unread = install_calls(postinst.read_text(encoding="utf-8", errors="replace"))
            alternatives += found
            for call in unread:
                log(f"{name}: not applied (its arguments are computed at install time): {call}")
        shutil.rmtree(unpacked)
        shutil.rmtree(control)
        names.append(name)
    for made in apply(tree, choose(alternatives)):
        log(f"alternative {made}")
    for note in tree.notes:
        log(note)
    triplet = platforms.parse(platform).triplet
    defaults = (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib", "/usr/local/lib")
    for extra in tree.loader_paths((*defaults, f"/usr/local/lib/{triplet}")):
        log(f"no ldconfig runs: libraries in {extra} are found only through a program's RUNPATH")
    return names


def status_entry(control: str) -> str:
    """dpkg's status stanza for an unpacked package: its control fields, marked installed."""
    lines = [line for line in control.strip("\n").splitlines() if not line.startswith("Status:")]
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("Package:")), 0)
    return "\n".join([*lines[:at], "Status: install ok installed", *lines[at:]]) + "\n"


def _field(control: str, name: str) -> str:
    for line in control.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


def _dpkg_deb(action: str, deb: Path, dest: Path) -> None:
    # umask 022: a worker that is not root gets the packages' modes, not its own umask's
    result = subprocess.run(
        ["dpkg-deb", action, str(deb), str(dest)], capture_output=True, text=True, timeout=600, umask=0o022,
        env={"PATH": APT_PATH, "LANG": "C.UTF-8"},
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemPackagesFailed(f"dpkg-deb {action} {deb.name} failed: {result.stderr.strip()[-500:]}")
