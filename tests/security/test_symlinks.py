"""Finding 4 of issue #13, as an outsider does it: push a branch holding `core/settings.txt ->
/proc/self/environ` (the compiler worker's environment: its git token, the registry password) and
`core/notes.txt -> <the package's real private key>`. A real compiler worker process fetches it
from a real git server; the build fails at stage config naming both links. A link that stays in
the repository but leaves its factory fails at stage compile naming it. A link inside its factory
builds: the artifact holds a regular file of the target's content, a real imager worker builds and
pushes the image to the real registry, and no secret's bytes are in any artifact file, event, or
layer tarball of the image (every layer is downloaded and searched)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest

from services.imager.build_context import UnsafeLink, directory_context, service_context
from shared.artifacts import pull_artifact
from shared.config import generate_keys
from shared.registry import RegistryClient
from tests.integration.imager_support import required_env, start_worker, stop_worker
from tests.security.compile_support import (
    GIT_TOKEN,
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

pytestmark = pytest.mark.integration


def one_service(raw: dict) -> None:
    """The operator's package, cut to one small service for amd64: one image to build and search."""
    package = raw["packages"]["demo"]
    package["services"] = {"scheduler": package["services"]["scheduler"]}
    package["deployment"]["platforms"] = ["linux/amd64"]
    package["deployment"]["volumes"] = {}
    package["deployment"]["registry"]["host"] = os.environ["KILN_REGISTRY_URL"]


@pytest.fixture(scope="module")
def stack(amqp_url, database_url, tmp_path_factory):
    registry = required_env("KILN_REGISTRY_URL")
    base = required_env("KILN_BASE_IMAGE_AMD64")
    work = tmp_path_factory.mktemp("links")
    generate_keys(work / "keys", "demo")
    repos = work / "repos"
    repos.mkdir()
    operator = operator_config(work / "operator" / "config.yaml", one_service)
    with https_git_server(repos, work / "tls") as (server, git_env):
        compiler, compiler_log = start_compiler(
            work,
            {
                **git_env,
                "KILN_AMQP_URL": amqp_url,
                "KILN_DATABASE_URL": database_url,
                "KILN_CONFIG_PATH": str(operator),
                "KILN_KEYS_DIR": str(work / "keys"),
                "KILN_WEBHOOKS_CLONE_URL": server.url("app.git"),
                "KILN_ARTIFACT_STORE": f"{registry}/kiln",
                "KILN_BASE_IMAGE_AMD64": base,
            },
        )
        imager = start_worker(
            "linux/amd64",
            {
                "KILN_AMQP_URL": amqp_url,
                "KILN_DATABASE_URL": database_url,
                "KILN_CONFIG_PATH": str(operator),
                "KILN_IMAGER_WORK_DIR": str(work / "imager"),
                "KILN_PROVE_STAY_UP_S": "2",
            },
            work / "imager.log",
        )
        try:
            yield {"work": work, "server": server, "repos": repos, "compiler_log": compiler_log}
        finally:
            stop(compiler)
            stop_worker(imager)


def secrets(work) -> list[bytes]:
    """What must never leave the worker: its git token, the registry password, the private key."""
    pem = (work / "keys" / "demo_private.pem").read_text()
    key_body = "".join(pem.splitlines()[1:-1])
    return [GIT_TOKEN.encode(), os.environ["KILN_REGISTRY_PASSWORD"].encode(), key_body[:64].encode()]


async def build(amqp_url, stack, tree, done=finished, timeout=120):
    commit = push(tree, stack["repos"], "app.git")
    async with Events(amqp_url) as events:
        build_id = await request_build(amqp_url, stack["server"].url("app.git"), commit)
        return await events.wait(build_id, done, timeout=timeout)


async def test_links_out_of_the_tree_fail_stage_config_naming_them(amqp_url, stack, tmp_path):
    tree = example_tree(tmp_path / "app", with_config=False)
    private_key = stack["work"] / "keys" / "demo_private.pem"
    (tree / "core" / "settings.txt").symlink_to("/proc/self/environ")
    (tree / "core" / "notes.txt").symlink_to(private_key)
    seen = await build(amqp_url, stack, tree)
    config = stage(seen, "config")
    assert config["status"] == "failed"
    assert config["error"].startswith("symbolic links leaving the source tree")
    assert "core/settings.txt -> /proc/self/environ" in config["error"]
    assert f"core/notes.txt -> {private_key}" in config["error"]
    assert config["detail"]["escaping_links"] == [
        f"core/notes.txt -> {private_key}",
        "core/settings.txt -> /proc/self/environ",
    ]
    assert not any(k.startswith("image.requested") for k, _ in seen)
    completed = next(b["data"] for k, b in seen if k == "compile.completed")
    assert completed["ok"] is False and completed["artifacts"] == []
    everything = json.dumps(seen).encode() + stack["compiler_log"].read_bytes()
    assert not [s for s in secrets(stack["work"]) if s in everything]


async def test_a_link_to_another_factory_fails_stage_compile_naming_it(amqp_url, stack, tmp_path):
    tree = example_tree(tmp_path / "app", with_config=False)
    (tree / "core" / "borrowed.txt").symlink_to("../storage/worker.py")
    seen = await build(amqp_url, stack, tree)
    assert stage(seen, "config")["status"] == "succeeded"
    compile_stage = stage(seen, "compile")
    assert compile_stage["status"] == "failed"
    assert (
        "core/borrowed.txt is a symbolic link to ../storage/worker.py, outside its factory"
        in (compile_stage["error"])
    )
    assert not any(k.startswith("image.requested") for k, _ in seen)


def layer_bytes(client: RegistryClient, repository: str, digest: str) -> list[bytes]:
    """Every layer of a pushed image, decompressed: the tar streams an image is made of."""
    repo = repository.split("/", 1)[1]
    _, _, body = client.get_manifest(repo, digest)
    layers = []
    for layer in json.loads(body)["layers"]:
        blob = client.get_blob(repo, layer["digest"])
        layers.append(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)
    return layers


async def test_a_link_inside_its_factory_ships_as_a_file_and_no_secret_reaches_a_layer(
    amqp_url, stack, tmp_path
):
    tree = example_tree(tmp_path / "app", with_config=False)
    (tree / "core" / "data").mkdir()
    (tree / "core" / "data" / "real.txt").write_text("in-tree content of the link\n")
    (tree / "core" / "notes.txt").symlink_to("data/real.txt")
    seen = await build(
        amqp_url, stack, tree, lambda e: finished(e) or any(k == "image.pushed" for k, _ in e), 400
    )
    pushed = [b["data"] for k, b in seen if k == "image.pushed"]
    assert pushed, [(k, b["data"].get("error")) for k, b in seen if k in ("stage.finished", "image.failed")]
    completed = next(b["data"] for k, b in seen if k == "compile.completed")
    client = RegistryClient(
        os.environ["KILN_REGISTRY_URL"],
        os.environ["KILN_REGISTRY_USERNAME"],
        os.environ["KILN_REGISTRY_PASSWORD"],
    )
    with client:
        artifact = pull_artifact(completed["artifacts"][0]["reference"], tmp_path / "artifact", client=client)
        notes = artifact / "core" / "notes.txt"
        assert not notes.is_symlink() and notes.read_text() == "in-tree content of the link\n"
        files = [p.read_bytes() for p in artifact.rglob("*") if p.is_file() and not p.is_symlink()]
        layers = layer_bytes(client, pushed[0]["repository"], pushed[0]["digest"])
    assert any(b"in-tree content of the link" in layer for layer in layers)  # the search sees content
    for secret in secrets(stack["work"]):
        assert not [f for f in files if secret in f], "a secret in the artifact"
        assert not [layer for layer in layers if secret in layer], "a secret in an image layer"
        assert secret not in json.dumps(seen).encode()


def test_the_build_context_never_follows_a_link_out_of_a_forged_artifact(tmp_path):
    artifact = tmp_path / "artifact"
    (artifact / "core").mkdir(parents=True)
    (artifact / "core" / "__init__.py").write_text("")
    (artifact / "core" / "inside.txt").symlink_to("__init__.py")
    launcher = tmp_path / "launch" / "kiln_launch.py"
    launcher.parent.mkdir()
    launcher.write_text("")
    context = service_context("FROM x\n", artifact, ("core",), None, launcher)
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["app/core/inside.txt"].issym()  # a link stays a link: its target is never read
    (artifact / "core" / "environ.txt").symlink_to("/proc/self/environ")
    with pytest.raises(UnsafeLink, match=r"core/environ\.txt is a symbolic link to /proc/self/environ"):
        service_context("FROM x\n", artifact, ("core",), None, launcher)
    with pytest.raises(UnsafeLink, match="outside the build context"):
        directory_context(artifact)
