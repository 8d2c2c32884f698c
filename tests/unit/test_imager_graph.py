"""Minimal factory sets from the import graph, and the multi-arch index naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.imager.image_job import immutable_tags, repository_path
from services.imager.import_graph import SourceIndex, command_module, minimal_factories
from services.imager.manifests import index_repository, index_tags

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monorepo"


def write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_example_services_need_exactly_their_configured_factories():
    index = SourceIndex.scan(EXAMPLE)
    assert minimal_factories(index, ["python3", "-m", "webhook.server"]) == ["core", "webhook"]
    assert minimal_factories(index, ["python3", "-m", "report.worker"]) == ["core", "report"]
    assert minimal_factories(index, ["python3", "-m", "core.scheduler"]) == ["core"]


def test_relative_lazy_and_dynamic_imports_all_count(tmp_path):
    write(tmp_path, "svc/__init__.py")
    write(tmp_path, "svc/main.py", "from . import helpers\ndef f():\n    import lazy.thing\n")
    write(
        tmp_path,
        "svc/helpers.py",
        "from ..svc import other\nimport importlib\nimportlib.import_module('dyn')\n",
    )
    write(tmp_path, "svc/other.py", "try:\n    import optional\nexcept ImportError:\n    pass\n")
    for name in (
        "lazy/__init__.py",
        "lazy/thing.py",
        "dyn/__init__.py",
        "optional/__init__.py",
        "unused/__init__.py",
    ):
        write(tmp_path, name)
    index = SourceIndex.scan(tmp_path)
    assert minimal_factories(index, ["python", "-m", "svc.main"]) == ["dyn", "lazy", "optional", "svc"]


def test_package_init_imports_count(tmp_path):
    write(tmp_path, "a/__init__.py", "import b\n")
    write(tmp_path, "a/run.py")
    write(tmp_path, "b/__init__.py")
    assert minimal_factories(SourceIndex.scan(tmp_path), ["python3", "-m", "a.run"]) == ["a", "b"]


def test_commands_without_a_module_are_refused(tmp_path):
    assert command_module(["./serve"]) is None
    with pytest.raises(ValueError, match="python -m"):
        minimal_factories(SourceIndex.scan(tmp_path), ["./serve"])


def test_names_of_repositories_tags_and_index():
    assert repository_path("127.0.0.1:5000/kiln/axion-web-demo") == "kiln/axion-web-demo"
    assert repository_path("kiln/axion-web-demo") == "kiln/axion-web-demo"
    assert index_repository(["h:1/kiln/x-demo-arm", "h:1/kiln/x-demo"]) == "h:1/kiln/x-demo"
    assert index_tags("b42") == ("b42-multiarch", "multiarch")
    assert immutable_tags_of(("latest", "b3")) == ["b3"]
    assert immutable_tags_of(("latest",)) == ["latest"]


def immutable_tags_of(tags):
    class Event:  # only .tags is read
        pass

    event = Event()
    event.tags = tags
    return immutable_tags(event)
