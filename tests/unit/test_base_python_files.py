"""Reading an image's Python from its layers (services/compiler/base_python): the overlay rules,
links resolved inside the image, the two layouts (Debian's, the python images'), and image
content that must stay data."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from services.compiler.base_python.layers import ImageFiles, Keep, UnreadableLayer
from services.compiler.base_python.python_files import (
    NoPython,
    export_headers,
    find_headers,
    find_python,
    free_threaded,
    want,
)

AMD64 = "x86_64-linux-gnu"
ARM64 = "aarch64-linux-gnu"


def layer(*entries, gzip: bool = True) -> io.BytesIO:
    """A layer tarball: ("file", path, bytes) / ("link", path, target) / ("hard", path, source)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as tar:
        for kind, path, value in entries:
            info = tarfile.TarInfo(path)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                info.type = tarfile.SYMTYPE if kind == "link" else tarfile.LNKTYPE
                info.linkname = value
                tar.addfile(info)
    buffer.seek(0)
    return buffer


def image(tmp_path: Path, *layers) -> ImageFiles:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    files = ImageFiles(spool, want)
    for each in layers:
        files.apply_layer(each)
    return files


def sysconfig(version: str, triplet: str, include: str, flags: str = "") -> bytes:
    nodot = version.replace(".", "")
    return (
        "# system configuration generated and used by the sysconfig module\n"
        f"build_time_vars = {{'VERSION': '{version}', 'SOABI': 'cpython-{nodot}{flags}-{triplet}',\n"
        f" 'EXT_SUFFIX': '.cpython-{nodot}{flags}-{triplet}.so', 'INCLUDEPY': '{include}',\n"
        " 'SIZEOF_LONG': 8}\n"
    ).encode()


DISPATCHER = (
    b"#if defined(__linux__)\n# if defined(__x86_64__)\n#  include <x86_64-linux-gnu/python3.11/pyconfig.h>\n"
)


def debian_bookworm(triplet: str = AMD64, *, headers: bool = False):
    entries = [
        ("link", "./bin", "usr/bin"),
        ("link", "./usr/bin/python3", "python3.11"),
        ("file", "./usr/bin/python3.11", b"\x7fELF"),
        (
            "file",
            f"./usr/lib/python3.11/_sysconfigdata__{triplet}.py",
            sysconfig("3.11", triplet, "/usr/include/python3.11"),
        ),
        ("link", f"./usr/lib/python3.11/_sysconfigdata__linux_{triplet}.py", f"_sysconfigdata__{triplet}.py"),
        ("file", "./usr/lib/python3.11/os.py", b"# not kept"),
    ]
    if headers:
        entries += [
            ("file", "./usr/include/python3.11/Python.h", b'#include "pyconfig.h"\n'),
            ("file", "./usr/include/python3.11/cpython/object.h", b"/* object */\n"),
            ("file", "./usr/include/python3.11/pyconfig.h", DISPATCHER),
            ("file", f"./usr/include/{triplet}/python3.11/pyconfig.h", b"#define SIZEOF_LONG 8\n"),
        ]
    return layer(*entries)


def python_slim(version: str = "3.13", triplet: str = ARM64, flags: str = ""):
    lib = f"usr/local/lib/python{version}{flags}"
    return layer(
        ("link", "usr/local/bin/python3", f"python{version}{flags}"),
        ("file", f"usr/local/bin/python{version}{flags}", b"\x7fELF"),
        ("file", f"{lib}/_sysconfigdata_{flags}_linux_{triplet}.py",
         sysconfig(version, triplet, f"/usr/local/include/python{version}{flags}", flags)),
        ("file", f"usr/local/include/python{version}{flags}/Python.h", b"/* Python.h */\n"),
        ("file", f"usr/local/include/python{version}{flags}/pyconfig.h",
         b"#define Py_GIL_DISABLED 1\n" if flags else b"#define SIZEOF_LONG 8\n"),
    )  # fmt: skip


def test_debians_python3_is_found_through_its_links(tmp_path):
    files = image(tmp_path, debian_bookworm())
    found = find_python(files, "/usr/local/bin:/usr/bin:/bin", AMD64)
    assert (found.version, found.soabi, found.interpreter) == (
        "3.11",
        f"cpython-311-{AMD64}",
        "usr/bin/python3.11",
    )
    assert found.include_dir == "usr/include/python3.11"
    assert find_headers(files, AMD64) == []  # Debian's python3 ships none
    assert files.read("usr/lib/python3.11/os.py") is None  # only what is needed is kept


def test_debians_split_pyconfig_becomes_one_include_directory(tmp_path):
    files = image(tmp_path, debian_bookworm(headers=True))
    (headers,) = find_headers(files, AMD64)
    assert headers.pyconfig == f"usr/include/{AMD64}/python3.11/pyconfig.h"
    exported = export_headers(files, headers, tmp_path / "include")
    assert (exported / "pyconfig.h").read_bytes() == b"#define SIZEOF_LONG 8\n"  # not the dispatcher
    assert (exported / "cpython" / "object.h").is_file() and (exported / "Python.h").is_file()
    assert find_headers(files, ARM64) == []  # the amd64 pyconfig is no arm64 one


def test_the_python_images_layout_with_its_headers(tmp_path):
    files = image(tmp_path, python_slim())
    found = find_python(files, None, ARM64)
    assert (found.version, found.soabi) == ("3.13", f"cpython-313-{ARM64}")
    (headers,) = find_headers(files, ARM64)
    assert (headers.directory, headers.include_dir) == ("python3.13", "usr/local/include/python3.13")


def test_a_free_threaded_python_keeps_its_abi_flag(tmp_path):
    files = image(tmp_path, python_slim("3.13", AMD64, flags="t"))
    found = find_python(files, None, AMD64)
    assert found.soabi == f"cpython-313t-{AMD64}"
    (headers,) = find_headers(files, AMD64)
    assert headers.directory == "python3.13t"
    assert free_threaded(files.read(headers.pyconfig)) and not free_threaded(b"#define SIZEOF_LONG 8\n")


def test_a_later_layer_wins_and_whiteouts_delete(tmp_path):
    upgrade = layer(
        ("file", "usr/local/bin/.wh.python3", b""),  # the python image's python3 removed
        ("link", "usr/local/bin/python3", "/usr/bin/python3.11"),  # absolute: inside the image
    )
    files = image(tmp_path, debian_bookworm(), python_slim(triplet=AMD64), upgrade)
    assert find_python(files, None, AMD64).version == "3.11"
    opaque = layer(("file", "usr/lib/python3.11/.wh..wh..opq", b""))
    files = image(tmp_path, debian_bookworm(), opaque)
    found = find_python(files, None, AMD64)  # the interpreter is there, its sysconfigdata gone:
    assert found.soabi == f"cpython-311-{AMD64}"  # the standard suffix is derived


def test_an_image_without_python_says_so(tmp_path):
    files = image(tmp_path, layer(("file", "etc/os-release", b"ID=alpine\n"), ("link", "bin/sh", "busybox")))
    with pytest.raises(NoPython, match=r"no python3 on its PATH \(/usr/local/sbin:"):
        find_python(files, None, AMD64)


def test_an_image_built_for_another_architecture_is_refused(tmp_path):
    files = image(tmp_path, debian_bookworm(AMD64))
    with pytest.raises(ValueError, match="built for x86_64, not aarch64-linux-gnu"):
        find_python(files, None, ARM64)


def test_hostile_layers_stay_data(tmp_path):
    """A link to the host's files, a link loop, a sysconfigdata that is code, a path escaping
    the root: nothing runs, nothing outside the image is read."""
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    code = f"import os; os.system('touch {tmp_path}/ran')\n"
    code += "build_time_vars = {'SOABI': __import__('os').name}\n"
    files = image(
        tmp_path,
        layer(
            ("link", "usr/local/bin/python3", "python3.13"),
            ("file", "usr/local/bin/python3.13", b"ELF"),
            ("file", f"usr/local/lib/python3.13/_sysconfigdata__linux_{AMD64}.py", code.encode()),
            ("link", "usr/local/include/python3.13/Python.h", str(secret)),
            ("link", "usr/bin/python3", "../bin/loop"),
            ("link", "usr/bin/loop", "python3"),
            ("file", "../../usr/include/python3.14/Python.h", b"escapes"),
        ),
    )
    found = find_python(files, None, AMD64)
    assert found.soabi == f"cpython-313-{AMD64}" and not (tmp_path / "ran").exists()
    assert files.read("usr/local/include/python3.13/Python.h") is None  # the host's file is never read
    assert files.resolve("usr/bin/python3") is None  # a loop ends
    assert files.read("usr/include/python3.14/Python.h") == b"escapes"  # `..` cannot climb out of the root


def test_a_layer_that_is_no_tar_stream_is_refused(tmp_path):
    with pytest.raises(UnreadableLayer, match="layer 1 is not a readable tar stream"):
        image(tmp_path, io.BytesIO(b"\x28\xb5\x2f\xfd zstd, say"))
    assert want("usr/include/aarch64-linux-gnu/python3.13/pyconfig.h") is Keep.CONTENT
    assert want("usr/bin/python3.13") is Keep.PRESENCE and want("usr/bin/perl") is Keep.SKIP
    plain = image(tmp_path, layer(("file", "usr/bin/python3.12", b"ELF"), gzip=False))
    assert plain.is_file("usr/bin/python3.12")
