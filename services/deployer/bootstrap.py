"""The one place that wires settings, bus, database, substrates and the handler table."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.deployer import handlers as h
from services.deployer.adapters.http_probe import HttpxProbe
from services.deployer.app_config import FetchDocument, document_fetcher
from services.deployer.deploy_step import DeployStep
from services.deployer.docs.stage import DocsStage
from services.deployer.ports import HttpProbe, Substrate
from services.deployer.release_log import ReleaseLog
from services.deployer.rollback import MissingImages, on_rollback_requested, registry_check
from services.deployer.settings import DeployerSettings
from services.deployer.signatures import signature_checker
from services.deployer.store import GateStore
from shared.bus import PermanentError
from shared.bus.dispatch import Only
from shared.bus.worker import Consumer, Worker
from shared.config import ConfigError, load_config
from shared.config.keys import key_paths
from shared.events import (
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    ImageFailed,
    ImagePushed,
    ManifestPushed,
    RollbackRequested,
    StageFinished,
)
from shared.stages import GATE_FACTS, OPTIONAL_GATE_FACTS


def substrate_factory(settings: DeployerSettings):
    """substrate name -> adapter; clients are created on first use (a compose-only deployer
    never needs a kubeconfig)."""
    made: dict[str, Substrate] = {}

    def substrate_for(name: str) -> Substrate:
        if name not in made:
            made[name] = _make_substrate(name, settings)
        return made[name]

    return substrate_for


def _make_substrate(name: str, settings: DeployerSettings) -> Substrate:
    if name == "compose":
        from services.deployer.adapters.docker_compose import ComposeSubstrate, connect_docker

        credentials = None
        if settings.registry_username and settings.registry_password:
            credentials = (settings.registry_username, settings.registry_password.get_secret_value())
        return ComposeSubstrate(
            connect_docker(settings.deployer_docker_url),
            state_dir=Path(settings.deployer_state_dir).expanduser(),
            prefix=settings.deployer_name_prefix,
            registry_credentials=credentials,
        )
    if name == "k8s":
        from kubernetes import config as kube_config

        from services.deployer.adapters.kubernetes import KubernetesSubstrate

        api = kube_config.new_client_from_config(config_file=settings.deployer_kubeconfig)
        cluster = KubernetesSubstrate(api, read_keys)
        helm = helm_binary(settings)
        if helm is None:
            return cluster
        from services.deployer.adapters.helm import HelmSubstrate

        return HelmSubstrate(
            cluster,
            read_keys,
            helm=helm,
            timeout_s=settings.deployer_helm_timeout_s,
            kubeconfig=settings.deployer_kubeconfig,
        )
    if name == "supervisor":
        from services.deployer.adapters.supervisor import SupervisorSubstrate

        return SupervisorSubstrate(Path(settings.deployer_supervisor_dir))
    raise PermanentError(f"packages.*.deployment.substrate: unknown substrate {name!r}")


def docs_stage(settings: DeployerSettings, env: Mapping[str, str]) -> DocsStage:
    from services.deployer.adapters.wikijs import WikiJs
    from shared.git_source import GitSource
    from shared.sandbox import Sandbox
    from shared.sources import SourceGuard

    git = GitSource(
        token=settings.git_token,
        username=settings.git_username,
        timeout_s=settings.git_timeout_s,
        # The docs stage fetches what the compiler did: the package's configured source only.
        token_hosts=settings.token_hosts(),
        guard=SourceGuard.from_operator_config(settings, env),
    )
    return DocsStage(
        fetch=git.fetch,
        publisher_for=lambda wiki, key: WikiJs(wiki.url, key, key_env=wiki.api_key_env),
        env=env,
        timeout_s=settings.deployer_docs_timeout_s,
        sandbox=Sandbox(required=not settings.allow_unsandboxed),
    )


def helm_binary(settings: DeployerSettings) -> str | None:
    """The helm binary the k8s substrate installs with, or None for server-side apply."""
    if settings.deployer_k8s_installer == "apply":
        return None
    found = shutil.which(settings.deployer_helm)
    if found is None and settings.deployer_k8s_installer == "helm":
        raise PermanentError(
            f"KILN_DEPLOYER_K8S_INSTALLER=helm, but no helm binary {settings.deployer_helm!r} on PATH; "
            "install helm, set KILN_DEPLOYER_HELM to its path, or use KILN_DEPLOYER_K8S_INSTALLER=apply"
        )
    return found


def read_keys(keys_dir: str, package: str) -> tuple[bytes, bytes]:
    private, public = key_paths(keys_dir, package)
    try:
        return private.read_bytes(), public.read_bytes()
    except OSError as exc:
        raise PermanentError(
            f"packages.{package}.keys.dir: cannot read the PEM keys ({exc}); "
            f"create them: python -m shared.config keys generate --package {package}"
        ) from None


def handler_table(
    settings: DeployerSettings,
    sessions: sessionmaker[Session],
    *,
    substrate_for: Callable[[str], Substrate] | None = None,
    probe: HttpProbe | None = None,
    sleep: Callable[[float], None] | None = None,
    env: Mapping[str, str] = os.environ,
    docs: DocsStage | None = None,
    missing_images: MissingImages | None = None,
    fetch_document: FetchDocument | None = None,
) -> dict[type, Any]:
    """The handler table for `topology.DEPLOYER_GATE`. Unit tests pass fakes for the ports."""
    if not settings.config_path:
        raise SystemExit("KILN_CONFIG_PATH must name the pipeline config.yaml")
    config_path = Path(settings.config_path)
    store = GateStore(sessions)
    releases = ReleaseLog(sessions)

    def load():
        return load_config(config_path, env)

    step = DeployStep(
        store=store,
        load_config=load,
        config_path=config_path,
        substrate_for=substrate_for or substrate_factory(settings),
        probe=probe or HttpxProbe(),
        platform=settings.deployer_platform,
        env=env,
        docs=docs or docs_stage(settings, env),
        check_signatures=signature_checker(settings),
        releases=releases,
        missing_images=missing_images or registry_check(settings),
        fetch_document=fetch_document or document_fetcher(settings),
        **({"sleep": sleep} if sleep else {}),
    )

    def package_facts(package: str) -> tuple[str, ...]:
        """Read when the gate decides, as the scanner reads it per image (docs/deployer.md)."""
        try:
            gated = load().package(package).gated_stages()
        except KeyError:
            return ()  # a package the operator does not declare turns nothing on
        except ConfigError as exc:
            raise PermanentError(f"package {package!r}: {exc}") from None
        return settings.package_facts(gated)

    gate = {
        "store": store,
        "deploy": step,
        "required": settings.required_facts(),
        "package_facts": package_facts,
    }
    recorded = (*GATE_FACTS, *OPTIONAL_GATE_FACTS)
    return {
        BuildRequested: partial(h.on_build_requested, store=store),
        CompileCompleted: partial(h.on_compile_completed, **gate),
        ImagePushed: partial(h.on_image_pushed, **gate),
        ImageFailed: partial(h.on_image_failed, **gate),
        # Every stage.finished reaches the gate queue; only gate stages' are facts to record.
        StageFinished: Only(
            partial(h.on_stage_finished, **gate, facts=recorded),
            accepts=partial(h.records_fact, facts=recorded),
        ),
        ManifestPushed: partial(h.on_manifest_pushed, store=store, load_config=load),
        BuildFinished: partial(h.on_build_finished, store=store),
        BuildCancelRequested: partial(h.on_cancel_requested, store=store),
        RollbackRequested: partial(
            on_rollback_requested,
            store=store,
            releases=releases,
            deploy=step,
            platform=settings.deployer_platform,
        ),
    }


def bootstrap(
    settings: DeployerSettings, sessions: sessionmaker[Session] | None = None, **fakes: Any
) -> Worker:
    """The deployer's worker: the gate queue. `fakes` go to `handler_table` (substrate_for, probe,
    sleep, env, docs, missing_images, fetch_document); `parts["sessions"]` is its database."""
    from shared.bus import SqlIdempotencyGuard
    from shared.bus.give_up import end_build_failed
    from shared.bus.topology import DEPLOYER_GATE
    from shared.db import make_engine, make_sessions

    sessions = sessions or make_sessions(make_engine(settings.database_url))
    handlers = handler_table(settings, sessions, **fakes)
    # A gate event it cannot digest ends its build; build.finished and cancels end nothing.
    quiet = (BuildFinished, BuildCancelRequested)
    ending = {model: end_build_failed("deploy") for model in handlers if model not in quiet}
    return Worker(
        source="deployer",
        settings=settings,
        # The gate sees a `replay --only` attempt's events whatever they would start: it ends it.
        consumers=[Consumer(DEPLOYER_GATE, handlers, give_up=ending, replay_scope=False)],
        guard=SqlIdempotencyGuard(sessions),
        health_port=settings.health_port,
        parts={"sessions": sessions},
    )
