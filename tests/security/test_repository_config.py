"""Finding 3 and 7 of issue #13, as an outsider does it: push a branch whose own config.yaml points
the build's images (and the registry credentials) at an attacker's registry, smuggles a RUN line
into the base image, gives its containers an app secret read from Kiln's own variables, asks
for Debian packages (an SSH server) in an image, or is a 400-byte alias bomb. A real compiler
worker process on RabbitMQ and MariaDB fetches it from a real git server. Each build fails at
stage config within 2 s, naming the key and saying where the operator sets it; it is not retried;
no image is requested; nothing reaches the attacker's registry. A legitimate push right after
still builds."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.imager_support import required_env
from tests.security.compile_support import (
    Events,
    example_tree,
    finished,
    https_git_server,
    operator_config,
    push,
    request_build,
    stage,
    start_compiler,
    stop,
)
from tests.unit.test_config_repository import ALIAS_BOMB

pytestmark = pytest.mark.integration


class AttackerRegistry:
    """Listens where the attacker wants images pushed; records every request that arrives."""

    def __init__(self):
        seen = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="evil"')
                self.end_headers()

            do_POST = do_PUT = do_HEAD = do_PATCH = do_GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def attacker():
    registry = AttackerRegistry()
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    repos = tmp_path_factory.mktemp("repos")
    with https_git_server(repos, repos.parent / f"{repos.name}-tls") as (server, git_env):
        yield server, repos, git_env


@pytest.fixture(scope="module")
def compiler(amqp_url, database_url, tmp_path_factory, git_server):
    from shared.config import generate_keys

    work = tmp_path_factory.mktemp("compiler")
    generate_keys(work / "keys", "demo")
    server, _, git_env = git_server
    env = {
        **git_env,
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": str(operator_config(work / "operator" / "config.yaml")),
        "KILN_KEYS_DIR": str(work / "keys"),
        # The operator's configured source for the package: the git server of this test.
        "KILN_WEBHOOKS_CLONE_URL": server.url("app.git"),
        "KILN_ARTIFACT_STORE": f"file://{work / 'artifacts'}",
        # The dev registry's (.kiln/dev.env): stage compile reads each one's Python.
        "KILN_BASE_IMAGE_AMD64": required_env("KILN_BASE_IMAGE_AMD64"),
        "KILN_BASE_IMAGE_ARM64": required_env("KILN_BASE_IMAGE_ARM64"),
    }
    worker, log_file = start_compiler(work, env)
    yield work, log_file
    stop(worker)


ATTACKS = {
    "registry": (
        "packages:\n  demo:\n    deployment:\n      registry: {{host: '{attacker}', project: kiln}}\n",
        "packages.demo.deployment",
    ),
    "base-image-newline": (
        "packages:\n  demo:\n    deployment:\n"
        '      base_images: {linux/amd64: "kiln/base:amd64\\nRUN cat /proc/1/environ"}\n',
        "packages.demo.deployment",
    ),
    "alias-bomb": (ALIAS_BOMB, "<yaml>"),
    # The app's secrets come from the deployer's environment: a branch naming Kiln's own variable
    # as the source of one would hand the registry password to its containers.
    "app-secrets": (
        "packages:\n  demo:\n    app_secrets:\n"
        "      DEMO_DATABASE_PASSWORD: {env: KILN_REGISTRY_PASSWORD, services: [webhook]}\n",
        "packages.demo.app_secrets",
    ),
    # Native software in the image is the operator's choice (docs/security.md, "System packages").
    "system-packages": (
        "packages:\n  demo:\n    services:\n      webhook: {system_packages: [openssh-server]}\n",
        "packages.demo.services.webhook.system_packages",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_a_pushed_config_yaml_cannot_choose_where_images_go(
    attack, amqp_url, compiler, git_server, attacker, tmp_path
):
    server, repos, _ = git_server
    text, key = ATTACKS[attack]
    tree = example_tree(tmp_path / "app")
    (tree / "config.yaml").write_text(text.format(attacker=attacker.host) if attack == "registry" else text)
    commit = push(tree, repos, "app.git")
    async with Events(amqp_url) as events:
        started = time.monotonic()
        build_id = await request_build(amqp_url, server.url("app.git"), commit)
        seen = await events.wait(build_id, finished, timeout=60)
        took = time.monotonic() - started
        await events.settle(3)  # a retry (0.2 s back-off in this worker) would show up here
        seen = [(k, b) for k, b in events.seen if b.get("buildid") == build_id]
    config = stage(seen, "config")
    assert config["status"] == "failed"
    assert f"{key}: " in config["error"], config["error"]
    if key != "<yaml>":
        assert (
            "operator only: set it in the operator config (the file at KILN_CONFIG_PATH)" in config["error"]
        )
    else:
        assert "YAML anchors and aliases" in config["error"]
    assert config["duration_ms"] < 2000 and took < 10, (config["duration_ms"], took)
    end = next(b["data"] for k, b in seen if k == "build.finished")
    assert (end["status"], end["failed_stage"]) == ("failed", "config")
    assert [k for k, b in seen if k == "stage.started"] == ["stage.started"], "retried"
    assert not any(k.startswith("image.requested") for k, _ in seen)
    assert attacker.requests == []


async def test_a_legitimate_push_after_the_attacks_still_builds(amqp_url, compiler, git_server, tmp_path):
    server, repos, _ = git_server
    commit = push(example_tree(tmp_path / "app"), repos, "app.git")
    async with Events(amqp_url) as events:
        build_id = await request_build(amqp_url, server.url("app.git"), commit)
        seen = await events.wait(
            build_id, lambda e: finished(e) or sum(k.startswith("image.requested") for k, _ in e) == 4, 300
        )
    assert [stage(seen, s)["status"] for s in ("config", "keys", "compile")] == ["succeeded"] * 3
    requested = [b["data"] for k, b in seen if k == "image.requested.amd64"]
    assert {r["repository"].split("/")[0] for r in requested} == {"127.0.0.1:5000"}  # the operator's
    assert {r["base_image"] for r in requested} == {required_env("KILN_BASE_IMAGE_AMD64")}
