"""The docs stage: the example's docs built by real MkDocs (real files, a real child process),
checked out by real git, and published by our Wiki.js client to a local GraphQL server that serves
the Wiki.js 2.x page schema (tests/fixtures/wikijs/pages.graphql) with graphql-core: every query is
validated and executed against those types, and the Bearer key is checked.

No real Wiki.js runs here (it ships from GitHub releases and Docker Hub, unreachable from this
machine, and is not on PyPI or npm), so the wiki side is a test of our client at its boundary.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from graphql import build_schema, graphql_sync
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from services.deployer.adapters.wikijs import WikiJs
from services.deployer.deploy_step import DeployStep
from services.deployer.docs.build import build_docs
from services.deployer.docs.stage import DocsStage
from services.deployer.docs.wiki_pages import rewrite_links, wiki_path
from services.deployer.gate import ImageState
from services.deployer.models import DeployerBuild, DeployerFact, DeployerImage
from services.deployer.ports import DocsFailed, WikiPage
from services.deployer.store import GateStore
from shared.config import load_config
from shared.db.models import Base
from shared.events import BuildFinished, StageFinished, StageStarted
from shared.events.build import Source
from shared.git_source import GitSource
from shared.naming import image_repository
from tests.unit.test_deployer_gate import Envelope, FakeContext
from tests.unit.test_deployer_verify import FakeProbe, FakeSubstrate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "monorepo"
OPERATOR_CONFIG = EXAMPLE.parent / "operator" / "config.yaml"
SCHEMA = build_schema((ROOT / "tests" / "fixtures" / "wikijs" / "pages.graphql").read_text())
KEY = "wk-" + uuid.uuid4().hex
READ_ONLY_KEY = "ro-" + uuid.uuid4().hex
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "KILN_WIKI_API_KEY": KEY}


# -- a local server with the Wiki.js page API ------------------------------------------------------


@dataclass
class Wiki:
    pages: dict[str, dict] = field(default_factory=dict)  # (locale/path) -> page
    requests: list[dict] = field(default_factory=list)
    refuse_paths: set[str] = field(default_factory=set)
    next_id: int = 1

    # resolvers: graphql-core calls these with (info, **arguments)
    def list(self, info, locale=None, **_):
        return [p for p in self.pages.values() if locale is None or p["locale"] == locale]

    def create(self, info, **args):
        if args["path"] in self.refuse_paths:
            return _result(False, 6005, "Page path cannot contains illegal characters.")
        if f"{args['locale']}/{args['path']}" in self.pages:
            return _result(False, 6002, "Cannot create this page because an entry already exists.")
        page = {**args, "id": self.next_id, "contentType": "html"}
        self.next_id += 1
        self.pages[f"{args['locale']}/{args['path']}"] = page
        return {**_result(True, 0, "Page created successfully."), "page": page}

    def update(self, info, id, **args):
        page = next((p for p in self.pages.values() if p["id"] == id), None)
        if page is None:
            return _result(False, 6003, "This page does not exist.")
        page.update({k: v for k, v in args.items() if v is not None})
        return {**_result(True, 0, "Page has been updated."), "page": page}


def _result(ok: bool, code: int, message: str) -> dict:
    return {
        "responseResult": {
            "succeeded": ok,
            "errorCode": code,
            "slug": "ok" if ok else "err",
            "message": message,
        }
    }


@pytest.fixture
def wiki():
    state = Wiki()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            if self.path != "/graphql":
                return self._send(404, {"error": "not found"})
            auth = self.headers.get("Authorization")
            if auth not in (f"Bearer {KEY}", f"Bearer {READ_ONLY_KEY}"):
                return self._send(401, {"error": "Unauthorized"})
            if auth == f"Bearer {READ_ONLY_KEY}" and body["query"].lstrip().startswith("mutation"):
                return self._send(200, {"data": {"pages": None}, "errors": [{"message": "Forbidden"}]})
            result = graphql_sync(
                SCHEMA,
                body["query"],
                root_value={"pages": lambda info: state},
                variable_values=body["variables"],
            )
            answer = {"data": result.data}
            if result.errors:
                answer["errors"] = [{"message": e.message} for e in result.errors]
            self._send(200, answer)

        def _send(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    server.server_close()


# -- MkDocs, for real ------------------------------------------------------------------------------


def test_example_docs_build_with_mkdocs_into_pages_with_their_html(tmp_path):
    built = build_docs(EXAMPLE, "mkdocs.yml", tmp_path, timeout_s=120, env=ENV)
    assert built.site_name == "Demo monorepo"
    assert [(p.src, p.url, p.title) for p in built.pages] == [
        ("index.md", "index.html", "Home"),
        ("services.md", "services.html", "Services"),
        ("ops/configuration.md", "ops/configuration.html", "Configuration"),
    ]
    services = built.pages[1].html
    assert '<div class="admonition note">' in services  # the mkdocs.yml's extensions ran
    assert (tmp_path / "site" / "services.html").is_file()


def test_mkdocs_errors_and_missing_files_are_named(tmp_path):
    with pytest.raises(DocsFailed, match=r"docs.mkdocs: no missing.yml in the repository"):
        build_docs(EXAMPLE, "missing.yml", tmp_path, timeout_s=60, env=ENV)
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "index.md").write_text("# Hi\n")
    (repo / "mkdocs.yml").write_text("site_name: x\nplugins: [no-such-plugin]\n")
    with pytest.raises(DocsFailed, match=r"mkdocs build of mkdocs.yml failed: .*no-such-plugin"):
        build_docs(repo, "mkdocs.yml", tmp_path / "w", timeout_s=60, env=ENV)


def test_the_build_child_sees_no_kiln_setting_or_key(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "index.md").write_text("# Env\n")
    # A hook is code from the repository: it runs in the (sandboxed) child and writes the
    # environment it sees into the page, the one place its output leaves the sandbox.
    (repo / "hook.py").write_text(
        "import json, os\n"
        "def on_page_markdown(markdown, **kwargs):\n"
        "    return markdown + '\\n\\nENV ' + json.dumps(dict(os.environ)).replace('\"', \"'\")\n"
    )
    (repo / "mkdocs.yml").write_text("site_name: x\nhooks: [hook.py]\n")
    built = build_docs(
        repo, "mkdocs.yml", tmp_path / "w", timeout_s=60, env={**ENV, "KILN_DATABASE_URL": "mysql://x"}
    )
    html = built.pages[0].html
    assert "ENV {" in html and "PATH" in html
    assert "KILN_" not in html and KEY not in html


# -- pages and links -------------------------------------------------------------------------------


def test_wiki_paths_and_links_between_pages():
    assert wiki_path("demo", "index.html") == "demo"
    assert wiki_path("demo", "ops/index.html") == "demo/ops"
    assert wiki_path("demo", "ops/Backup Plan.html") == "demo/ops/backup-plan"
    html = (
        '<a href="../services.html#table">s</a> <a href="index.html">home</a> '
        '<a href="https://example.com/x.html">ext</a> <a href="#here">anchor</a> '
        '<a href="../../outside.html">out</a>'
    )
    assert rewrite_links(html, "ops/configuration.html", "demo", "en") == (
        '<a href="/en/demo/services#table">s</a> <a href="/en/demo/ops">home</a> '
        '<a href="https://example.com/x.html">ext</a> <a href="#here">anchor</a> '
        '<a href="../../outside.html">out</a>'
    )


# -- the Wiki.js client ----------------------------------------------------------------------------


def test_publish_creates_then_updates_pages_through_the_wiki_js_api(wiki):
    client = WikiJs(wiki.url, KEY, key_env="KILN_WIKI_API_KEY")
    pages = [WikiPage("demo", "Home", "d", "<p>1</p>"), WikiPage("demo/ops", "Ops", "", "<p>2</p>")]
    first = client.publish(pages, locale="en", tags=["kiln", "demo"])
    assert first.created == ("demo", "demo/ops") and first.updated == ()
    second = client.publish([WikiPage("demo", "Home", "d", "<p>1 again</p>")], locale="en", tags=["kiln"])
    assert second.created == () and second.updated == ("demo",)
    assert wiki.pages["en/demo"]["content"] == "<p>1 again</p>" and len(wiki.pages) == 2

    assert {r["path"] for r in wiki.requests} == {"/graphql"}
    assert {r["auth"] for r in wiki.requests} == {f"Bearer {KEY}"}
    names = [r["query"].split("(")[0].split()[-1] for r in wiki.requests]
    assert names == [
        "KilnListPages",
        "KilnCreatePage",
        "KilnCreatePage",
        "KilnListPages",
        "KilnUpdatePage",
    ]
    create = wiki.requests[1]["variables"]
    assert create == {
        "content": "<p>1</p>",
        "description": "d",
        "editor": "code",
        "isPublished": True,
        "isPrivate": False,
        "locale": "en",
        "path": "demo",
        "tags": ["kiln", "demo"],
        "title": "Home",
    }
    assert wiki.requests[4]["variables"]["id"] == wiki.pages["en/demo"]["id"]


def test_wiki_errors_name_the_cause_and_never_the_key(wiki):
    page = [WikiPage("demo", "Home", "", "<p/>")]
    with pytest.raises(DocsFailed) as refused:
        WikiJs(wiki.url, "wrong-key-123456", key_env="KILN_WIKI_API_KEY").publish(page, locale="en", tags=[])
    assert "refused the API key (HTTP 401): check the key in KILN_WIKI_API_KEY" in str(refused.value)
    assert "wrong-key" not in str(refused.value)

    with pytest.raises(
        DocsFailed, match=r"Forbidden \(is the key in KILN_WIKI_API_KEY allowed to write pages"
    ):
        WikiJs(wiki.url, READ_ONLY_KEY, key_env="KILN_WIKI_API_KEY").publish(page, locale="en", tags=[])

    wiki.refuse_paths.add("demo")
    with pytest.raises(DocsFailed, match=r"wiki page demo: create failed: .*illegal.*\(Wiki.js error 6005\)"):
        WikiJs(wiki.url, KEY, key_env="KILN_WIKI_API_KEY").publish(page, locale="en", tags=[])

    with pytest.raises(DocsFailed, match=r"wiki http://127.0.0.1:9/graphql unreachable"):
        WikiJs("http://127.0.0.1:9", KEY, key_env="KILN_WIKI_API_KEY").publish(page, locale="en", tags=[])


# -- the stage: checkout, build, publish -----------------------------------------------------------


def _stage():
    git = GitSource(timeout_s=60, transports=("file",))  # the local repository below
    return DocsStage(
        fetch=git.fetch,
        publisher_for=lambda cfg, key: WikiJs(cfg.url, key, key_env=cfg.api_key_env),
        env=ENV,
        timeout_s=120,
    )


def _config(wiki_url: str, **env):
    return load_config(
        OPERATOR_CONFIG,
        {"KILN_DOCS_ENABLED": "true", "KILN_DOCS_WIKI_URL": wiki_url, "KILN_KEYS_DIR": "/tmp/k", **env},
    )


@pytest.fixture(scope="module")
def example_repo(tmp_path_factory):
    """The example's docs committed in a git repository: the stage clones it like any build's source."""
    repo = tmp_path_factory.mktemp("repo")
    for path in ["mkdocs.yml", *(str(p.relative_to(EXAMPLE)) for p in (EXAMPLE / "docs").rglob("*.md"))]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text((EXAMPLE / path).read_text())
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "docs"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
    return f"file://{repo}", commit.strip()


def test_stage_clones_builds_and_publishes_under_the_prefix(wiki, example_repo):
    url, commit = example_repo
    docs = _config(wiki.url).package("demo").docs
    detail = _stage().run("demo", docs, Source(repo_url=url, commit=commit, ref="main"))
    assert detail["pages_built"] == 3 and detail["pages_published"] == 3
    assert detail["created"] == ["demo", "demo/services", "demo/ops/configuration"]
    assert detail["wiki_url"] == f"{wiki.url}/en/demo" and detail["unpublished_assets"] == 0
    home = wiki.pages["en/demo"]
    assert home["title"] == "Home" and home["editor"] == "code" and home["tags"] == ["kiln"]
    assert f"Generated by Kiln from {url} at {commit[:12]}, file index.md" in home["content"]
    assert '<a href="/en/demo/services">the services</a>' in home["content"]
    assert 'href="/en/demo/ops/configuration#mounted-config"' in home["content"]


def test_stage_without_a_key_or_without_a_wiki(wiki):
    docs = _config(wiki.url).package("demo").docs
    stage = _stage()
    stage.env = {"PATH": "/usr/bin:/bin"}
    with pytest.raises(
        DocsFailed, match=r"packages.demo.docs.wiki.api_key_env: KILN_WIKI_API_KEY is not set"
    ):
        stage.run("demo", docs, Source(path=str(EXAMPLE)))
    built_only = docs.model_copy(update={"wiki": None})
    detail = _stage().run("demo", built_only, Source(path=str(EXAMPLE)))
    assert detail["pages_built"] == 3 and detail["pages_published"] == 0 and wiki.requests == []


# -- in the build: after a healthy deploy, warn or fail ------------------------------------------


@pytest.fixture
def store():
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(
        engine, tables=[DeployerBuild.__table__, DeployerImage.__table__, DeployerFact.__table__]
    )
    return GateStore(sessionmaker(engine, expire_on_commit=False))


def _deploy(store, cfg, source: dict):
    build_id = str(uuid.uuid4())
    store.ensure_build(build_id, "demo", {}, source)
    assert store.claim_deploy(build_id, "e1")
    substrate = FakeSubstrate(broken_image="bad")
    substrate.release = None  # a first deploy
    step = DeployStep(
        store=store,
        load_config=lambda: cfg,
        config_path=OPERATOR_CONFIG,
        substrate_for=lambda name: substrate,
        probe=FakeProbe(substrate),
        platform="linux/amd64",
        env={},
        docs=_stage(),
        check_signatures=lambda references: [],  # signatures: tests/attester/test_deploy_refuses.py
        sleep=lambda s: None,
    )
    images = [
        ImageState(
            s,
            "linux/amd64",
            True,
            # what the example's operator config derives: the deployer refuses anything else
            repository=image_repository("127.0.0.1:5000", "kiln", "axion", s, "demo", "linux/amd64"),
            tag="b1",
            digest="sha256:" + "d" * 64,
        )
        for s in ("webhook", "report", "scheduler", "storage-worker")
    ]
    ctx = FakeContext(build_id, Envelope("e1"))
    step(ctx, store.build(build_id), images)
    return ctx.emitted


def _docs_events(emitted):
    return [e for e in emitted if isinstance(e, StageStarted | StageFinished) and e.stage == "docs"]


def test_docs_stage_runs_after_a_healthy_deploy_and_a_failure_only_warns_by_default(store, wiki):
    emitted = _deploy(store, _config(wiki.url), {"path": str(EXAMPLE)})
    started, finished = _docs_events(emitted)
    assert isinstance(started, StageStarted) and isinstance(finished, StageFinished)
    assert finished.status == "succeeded" and finished.detail["pages_published"] == 3
    assert emitted[-1] == BuildFinished(status="succeeded", duration_ms=emitted[-1].duration_ms)

    down = _deploy(store, _config("http://127.0.0.1:9"), {"path": str(EXAMPLE)})
    _, failed = _docs_events(down)
    assert failed.status == "failed" and "unreachable" in failed.error
    assert failed.detail == {"on_failure": "warn", "mkdocs": "mkdocs.yml", "wiki_url": "http://127.0.0.1:9"}
    assert isinstance(down[-1], BuildFinished) and down[-1].status == "succeeded"  # the deploy stands
    assert KEY not in json.dumps([e.model_dump(mode="json") for e in down])


def test_docs_failure_fails_the_build_when_configured_and_nothing_runs_when_disabled(store, wiki):
    emitted = _deploy(
        store, _config("http://127.0.0.1:9", KILN_DOCS_ON_FAILURE="fail"), {"path": str(EXAMPLE)}
    )
    finished = emitted[-1]
    assert finished.status == "failed" and finished.failed_stage == "docs"
    assert finished.error.startswith("docs: wiki http://127.0.0.1:9/graphql unreachable")

    off = _deploy(store, load_config(OPERATOR_CONFIG, {"KILN_KEYS_DIR": "/tmp/k"}), {"path": "/x"})
    assert _docs_events(off) == [] and off[-1].status == "succeeded"
