"""arm64 by cross-compilation: the generated C is shared, the .so is a real aarch64 ELF."""

import struct
from pathlib import Path

from services.compiler.engine import ModuleCache, compile_tree

EM_X86_64, EM_AARCH64 = 62, 183


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return struct.unpack_from("<H", header, 18)[0]


def test_cross_compiles_both_platforms_from_one_c_file(tmp_path):
    src = tmp_path / "src" / "geo"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "shapes.py").write_text("def area(w, h):\n    return w * h\n")
    cache = ModuleCache(tmp_path / "cache")
    report = compile_tree(
        src.parent,
        tmp_path / "out",
        platforms=["linux/amd64", "linux/arm64"],
        jobs=2,
        cache=cache,
    )
    assert report.ok, report.failed
    amd64 = report.outputs["linux/amd64"] / "geo" / "shapes.cpython-311-x86_64-linux-gnu.so"
    arm64 = report.outputs["linux/arm64"] / "geo" / "shapes.cpython-311-aarch64-linux-gnu.so"
    assert elf_machine(amd64) == EM_X86_64
    assert elf_machine(arm64) == EM_AARCH64
    # One .py -> .c for both platforms: a single C entry in the cache, two extensions.
    assert len(list((cache.root / "c").rglob("*.c"))) == 1
    assert len(list((cache.root / "so").rglob("*.so"))) == 2
    assert (report.outputs["linux/arm64"] / "geo" / "__init__.py").read_text() == ""
