"""The system layer's tree: .debs unpacked as dpkg would lay them on the image (merged /usr, links
inside the layer, alternatives from the scripts read not run), never setuid, never outside the
layer, and byte-identical from the same packages."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import uuid
from pathlib import Path

import pytest

from services.imager.alternatives import Alternative, Link, choose, install_calls
from services.imager.build_context import FIXED_MTIME, service_context
from services.imager.deb_layer import build_layer, status_entry
from services.imager.dockerfile import LAUNCHER_SOURCE, ImageSpec, render_dockerfile
from services.imager.layer_tree import LayerPathError, LayerTree
from tests.unit.system_debs import make_deb

MERGED = {"bin": "usr/bin", "lib": "usr/lib", "sbin": "usr/sbin", "lib64": "usr/lib64"}
# ImageMagick's postinst, shortened: the programs' links come from a loop.
LOOPED = """#!/bin/sh
set -e
if [ "$1" = "configure" ]
then
    for prog in convert identify; do
    if dpkg --compare-versions "$2" lt-nl "8:6.9.2.10+dfsg-3"; then
        update-alternatives --remove-all $prog
    fi
    update-alternatives --install /usr/bin/$prog \\
                        $prog /usr/bin/$prog-im6.q16 10000 \\
                        --slave /usr/share/man/man1/$prog.1.gz \\
                        $prog.1.gz /usr/share/man/man1/$prog-im6.q16.1.gz
    done
fi
update-alternatives --quiet --install /usr/bin/x-www-browser x-www-browser "/usr/bin/chromium" 40 \\
    >/dev/null 2>&1
check() { update-alternatives --install "$BINPATH/$1" "$1" "$BINPATH/$1.procps" 50; }
"""


def test_alternatives_are_read_from_loops_and_literal_calls_never_run():
    found, unread = install_calls(LOOPED)
    masters = sorted((a.master.link, a.master.path, a.priority) for a in found)
    assert masters == [
        ("/usr/bin/convert", "/usr/bin/convert-im6.q16", 10000),
        ("/usr/bin/identify", "/usr/bin/identify-im6.q16", 10000),
        ("/usr/bin/x-www-browser", "/usr/bin/chromium", 40),
    ]
    convert = next(a for a in found if a.master.name == "convert")
    assert convert.slaves == (
        Link("/usr/share/man/man1/convert.1.gz", "convert.1.gz", "/usr/share/man/man1/convert-im6.q16.1.gz"),
    )
    assert len(unread) == 1 and "$BINPATH" in unread[0]  # computed in a function: reported, not guessed


def test_the_highest_priority_wins_per_alternative():
    low = Alternative(Link("/usr/bin/awk", "awk", "/usr/bin/mawk"), 5)
    high = Alternative(Link("/usr/bin/awk", "awk", "/usr/bin/gawk"), 10)
    assert choose([low, high]) == [high]


def test_paths_follow_the_bases_merged_usr_and_the_layers_links_without_leaving_it(tmp_path):
    tree = LayerTree(tmp_path, MERGED)
    assert tree.resolve("/lib/x86_64-linux-gnu/libk.so.1") == "usr/lib/x86_64-linux-gnu/libk.so.1"
    assert tree.resolve("/bin/tool") == "usr/bin/tool"
    (tmp_path / "usr" / "share").mkdir(parents=True)
    (tmp_path / "usr" / "share" / "fonts").symlink_to("/etc/../../../../etc/fonts")  # absolute: the image's /
    assert tree.resolve("/usr/share/fonts/conf.d/x.conf") == "etc/fonts/conf.d/x.conf"
    assert tree.resolve("/../../../etc/passwd") == "etc/passwd"
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(LayerPathError, match="links deep"):
        tree.resolve("/loop/x")


def test_a_link_to_a_host_directory_never_lets_a_later_package_write_outside_the_layer(tmp_path):
    host = tmp_path / "host-etc"
    host.mkdir()
    layer, first, second = tmp_path / "layer", tmp_path / "a", tmp_path / "b"
    layer.mkdir()
    (first / "usr" / "share").mkdir(parents=True)
    (first / "usr" / "share" / "evil").symlink_to(host)  # an absolute link, as a package may ship
    (second / "usr" / "share" / "evil").mkdir(parents=True)
    (second / "usr" / "share" / "evil" / "planted").write_text("x")
    tree = LayerTree(layer, MERGED)
    tree.merge(first)
    tree.merge(second)
    assert list(host.iterdir()) == []
    assert (layer / host.relative_to("/") / "planted").read_text() == "x"  # the image's path, in the layer


def _tool_debs(out: Path, marker: Path) -> list[Path]:
    tool = make_deb(
        out,
        "kiln-tool",
        {
            "/usr/bin/tool-v1": (b"#!/bin/sh\necho tool\n", 0o4755),  # setuid in the package
            "/lib/x86_64-linux-gnu/libkiln.so.1": b"\x7fELF",
            "/usr/share/doc/kiln-tool/copyright": b"MIT",
            "/usr/share/doc/kiln-tool/changelog.gz": b"long",
            "/usr/share/man/man1/tool-v1.1.gz": b"man",
            "/etc/ld.so.conf.d/kiln.conf": b"/opt/kiln/lib\n/usr/lib/x86_64-linux-gnu\n",
        },
        postinst=(
            f"#!/bin/sh\ntouch {marker}\n"
            "for p in tool; do update-alternatives --install /usr/bin/$p $p /usr/bin/$p-v1 20 "
            "--slave /usr/share/man/man1/$p.1.gz $p.1.gz /usr/share/man/man1/$p-v1.1.gz; done\n"
        ),
    )
    data = make_deb(
        out, "kiln-data", {"/usr/share/kiln/data.txt": b"data", "/usr/lib/kiln": "->../share/kiln"}
    )
    return [tool, data]


def test_debs_are_unpacked_as_dpkg_lays_them_and_no_script_runs(tmp_path):
    marker = tmp_path / f"postinst-ran-{uuid.uuid4().hex}"
    debs = _tool_debs(tmp_path, marker)
    root, log = tmp_path / "root", []
    root.mkdir()
    names = build_layer(
        debs, root, tmp_path / "work", base_links=MERGED, platform="linux/amd64", log=log.append
    )
    assert names == ["kiln-data", "kiln-tool"] and not marker.exists()
    assert sorted(p.name for p in root.iterdir()) == ["etc", "usr", "var"]  # no lib/: it would replace /lib
    assert (root / "usr/lib/x86_64-linux-gnu/libkiln.so.1").is_file()
    assert os.readlink(root / "usr/bin/tool") == "/etc/alternatives/tool"
    assert os.readlink(root / "etc/alternatives/tool") == "/usr/bin/tool-v1"
    assert not (root / "usr/share/man/man1/tool.1.gz").is_symlink()  # its provider (a manual) is not kept
    assert stat.S_IMODE((root / "usr/bin/tool-v1").stat().st_mode) == 0o755  # setuid dropped
    assert any("set-user/group-ID bit of /usr/bin/tool-v1" in line for line in log)
    assert (root / "usr/share/doc/kiln-tool/copyright").read_bytes() == b"MIT"
    assert not (root / "usr/share/doc/kiln-tool/changelog.gz").exists()
    assert os.readlink(root / "usr/lib/kiln") == "../share/kiln"
    assert any("/opt/kiln/lib" in line and "RUNPATH" in line for line in log)
    assert not any("/usr/lib/x86_64-linux-gnu (" in line for line in log)  # a default directory
    entry = (root / "var/lib/dpkg/status.d/kiln-tool").read_text()
    assert entry.startswith("Package: kiln-tool\nStatus: install ok installed\nVersion: 1.0-1\n")


def test_the_same_debs_give_the_same_context_bytes_all_root_no_setuid(tmp_path):
    contexts = []
    for run in ("one", "two"):
        debs = _tool_debs(tmp_path / run, tmp_path / "marker")
        root = tmp_path / run / "root"
        root.mkdir()
        os.chmod(root, 0o700)  # a worker's tempdir: the layer's / is still 0755 in the image
        build_layer(debs, root, tmp_path / run / "work", base_links=MERGED, platform="linux/amd64", log=print)
        (tmp_path / run / "art").mkdir()
        contexts.append(service_context("FROM x\n", tmp_path / run / "art", (), None, LAUNCHER_SOURCE, root))
    assert contexts[0] == contexts[1]
    with tarfile.open(fileobj=io.BytesIO(contexts[0])) as tar:
        members = {m.name: m for m in tar.getmembers() if m.name == "sys" or m.name.startswith("sys/")}
    assert members["sys"].mode == 0o755
    assert (
        members["sys/usr/bin/tool"].issym()
        and members["sys/usr/bin/tool"].linkname == "/etc/alternatives/tool"
    )
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, FIXED_MTIME)}
    assert not any(m.mode & 0o6000 for m in members.values())


def test_the_system_layer_is_one_copy_to_the_root_below_the_tier_and_no_run_step():
    text = render_dockerfile(
        ImageSpec(
            base_image="kiln-base:bookworm-arm64", command=("python3", "-m", "report.worker"),
            factories=("report",), tier="render", requirements_hash="abc",
            system_packages=("imagemagick",), system_layer="arm64-0123",
        )
    )  # fmt: skip
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert [line for line in lines if line.startswith("COPY")] == [
        "COPY launch/ /opt/kiln/launch/",
        "COPY sys/ /",
        "COPY tier/ /opt/kiln/venv/",
        "COPY app/report/ /app/report/",
    ]
    assert not any(line.startswith("RUN") for line in lines)
    assert "# system packages imagemagick (arm64-0123)" in text


def test_a_status_entry_is_the_control_marked_installed():
    control = "Package: x\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: arm64\n"
    assert (
        status_entry(control) == "Package: x\nStatus: install ok installed\nVersion: 1\nArchitecture: arm64\n"
    )
