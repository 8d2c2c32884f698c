"""The cache of what was read from base images (services/compiler/base_python/store.py): one
read per digest, bounded by entries, least recently used out, never an entry a compile holds."""

from __future__ import annotations

import os
import time

from services.compiler.base_python.store import ImageStore


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


def filler(calls: list):
    def fill(directory):
        calls.append(directory.name)
        (directory / "include").mkdir()
        (directory / "include" / "Python.h").write_text("/* headers */")
        return {"python": {"version": "3.13"}}

    return fill


def test_an_image_is_read_once_per_digest(tmp_path):
    store, calls = ImageStore(tmp_path), []
    with store.held(digest(1), filler(calls)) as (entry, described):
        assert (entry / "include" / "Python.h").is_file() and described["cached"] is False
    with store.held(digest(1), filler(calls)) as (_, described):
        assert described == {"python": {"version": "3.13"}, "cached": True}
    assert len(calls) == 1


def test_the_least_recently_used_entries_go_but_never_one_a_compile_holds(tmp_path):
    store, calls = ImageStore(tmp_path, max_entries=2), []
    with store.held(digest(1), filler(calls)) as (held, _):
        for n in (2, 3, 4):
            old = time.time() - 100 + n
            with store.held(digest(n), filler(calls)) as (entry, _):
                pass
            os.utime(entry, (old, old))
        os.utime(held, (time.time() - 1000,) * 2)  # the oldest, but in use
        store.evict()
        assert (held / "include" / "Python.h").is_file()  # gcc may be reading it right now
    kept = {p.name[:1] for p in store.entries()}
    assert kept == {"1", "4"}  # the held one, and the newest that fits the bound
    assert store.evict() == []  # within the bound now: nothing more goes
    with store.held(digest(5), filler(calls)):
        pass
    assert {p.name[:1] for p in store.entries()} == {"4", "5"}  # released, 1 was the oldest
