"""The compose substrate, for real on a Docker Engine through the docker SDK.

One network per package (`{prefix}{package}`), one container per service replica, each with the
trimmed config and the package's own two key files mounted read-only (a copy in the deployer's
state dir, never the operator's keys directory, which may hold other packages' keys), confined as
services.deployer.scaffold.hardening says (no capabilities, read-only root, limits). A service
that reads the app's own config also mounts its file (the sections it reads) read-only at
APP_CONFIG_MOUNT, and gets its app secrets as environment variables through the Docker API (never
in a file). Services are replaced one at a time (infra first), so the others keep running.

As `docker compose up` does, a container is recreated only when what it is made from changed
(its `dev.kiln.spec` label, compose_containers.py); a running, never-restarted container whose
label matches is left as it is. So a change of one section of the app config recreates the
services that read it, and the others keep their containers. Every container carries its release
in labels: the image reference of what runs is read back from the engine, the revision from the
state dir (an untouched container keeps an older release's label), and the config and app config
it runs with from the files it mounts, which is how a failed release is rolled back to the
previous images and config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

from services.deployer.adapters.compose_containers import MountedFiles, container_options, spec_digest
from services.deployer.adapters.compose_state import StackState, read_mounted
from services.deployer.ports import Release
from services.deployer.scaffold import ScaffoldInputs
from services.deployer.scaffold.hardening import APP_UID, NO_NEW_PRIVILEGES
from services.deployer.topology import APP_CONFIG_MOUNT, CONFIG_MOUNT, ServicePlan, Topology
from shared.bus import PermanentError, TransientError
from shared.logging import REDACT

LABEL_STACK = "dev.kiln.stack"
LABEL_SERVICE = "dev.kiln.service"
LABEL_IMAGE = "dev.kiln.image"
LABEL_REVISION = "dev.kiln.revision"
LABEL_SPEC = "dev.kiln.spec"  # what the container is made of (compose_containers.spec_digest)
STOP_TIMEOUT_S = 10


def connect_docker(base_url: str | None = None) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
        return client
    except DockerException as exc:
        raise TransientError(
            f"cannot reach the Docker Engine ({base_url or 'DOCKER_HOST or the default socket'}): {exc}; "
            "start it (./kiln-dev services) or set KILN_DEPLOYER_DOCKER_URL"
        ) from exc


class ComposeSubstrate:
    name = "compose"

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        state_dir: Path,
        prefix: str = "kiln-",
        registry_credentials: tuple[str, str] | None = None,
    ):
        self._client = client
        self._state_dir = state_dir
        self._prefix = prefix
        # To pull an image the engine no longer holds (an image worker on this host removed it,
        # a rollback to an older build, another host built it). Given to the engine per pull.
        self._registry_credentials = registry_credentials

    def stack(self, topology: Topology) -> str:
        return f"{self._prefix}{topology.package}"

    def container_names(self, topology: Topology, service: ServicePlan) -> list[str]:
        base = f"{self.stack(topology)}-{service.dns_name}"
        return [base] if service.replicas == 1 else [f"{base}-{i}" for i in range(service.replicas)]

    # -- the port --------------------------------------------------------------------------------

    def apply(self, inputs: ScaffoldInputs, revision: int) -> dict[str, Any]:
        topology = inputs.topology
        stack = self.stack(topology)
        state = StackState(self._state_dir, stack)
        try:
            network = self._network(stack)
            files = MountedFiles(state.config_file(inputs), *state.copy_keys(inputs))
            for svc in topology.apps:
                app_config = state.app_config_file(inputs, svc.name)
                if app_config is not None:
                    files.app_configs[svc.name] = app_config
            # Every image is here before any container is replaced: a failed pull leaves the
            # running release as it was.
            for image in sorted(set(inputs.images.values())):
                self._ensure_image(image)
            # one app image per mounted volume (any image of the package has python3)
            mounted = {v.dns_name: inputs.images[a.name] for a in topology.apps for v in a.volumes}
            for volume, image in sorted(mounted.items()):
                self._own_volume(stack, volume, image)
            started, unchanged = [], []
            for svc in topology.services:
                options = container_options(svc, inputs, stack=stack, network=network.name, files=files)
                spec = spec_digest(options, svc.dns_name, files.keys_digest)
                for name in self.container_names(topology, svc):
                    if self._unchanged(name, spec):
                        unchanged.append(name)
                        continue
                    self._remove(name)
                    self._start(name, svc, options, spec, revision, stack)
                    started.append(name)
            removed = self._remove_strays(topology)
            state.record_revision(revision)
        except APIError as exc:
            raise TransientError(f"Docker Engine refused the deploy of {stack}: {exc.explanation}") from exc
        return {"network": stack, "containers": started, "unchanged": unchanged, "removed": removed}

    def current(self, topology: Topology) -> Release | None:
        containers = self._client.containers.list(
            all=True, filters={"label": f"{LABEL_STACK}={self.stack(topology)}"}
        )
        if not containers:
            return None
        images = {c.labels[LABEL_SERVICE]: c.labels[LABEL_IMAGE] for c in containers}
        revision = StackState(self._state_dir, self.stack(topology)).revision()
        if revision is None:  # state dir wiped: the newest label is the best guess
            revision = max(int(c.labels.get(LABEL_REVISION, 0)) for c in containers)
        config, app_configs = self._mounted_files(containers)
        return Release(topology.package, revision, images, config, app_configs)

    def rollback(self, restored: ScaffoldInputs, previous: Release) -> dict[str, Any]:
        # Each container made of other images, config or app config than the previous release's is
        # recreated with the restored ones; the others already are what it ran.
        return self.apply(restored, previous.revision)

    def endpoint(self, topology: Topology, service: ServicePlan) -> str | None:
        if service.port is None:
            return None
        container = self._container(self.container_names(topology, service)[0])
        if container is None:
            return None
        networks = container.attrs["NetworkSettings"]["Networks"]
        address = networks.get(self.stack(topology), {}).get("IPAddress")
        return f"http://{address}:{service.port}" if address else None

    def running(self, topology: Topology, service: ServicePlan) -> tuple[bool, str]:
        states = []
        for name in self.container_names(topology, service):
            container = self._container(name)
            if container is None:
                return False, f"{name}: missing"
            state = container.attrs["State"]
            restarts = container.attrs.get("RestartCount", 0)
            states.append(
                (state.get("Running") and not state.get("Restarting") and restarts == 0, state, name)
            )
        bad = [f"{name}: {s.get('Status')} (exit {s.get('ExitCode')})" for ok, s, name in states if not ok]
        return (not bad, "; ".join(bad) or "running")

    def logs(self, topology: Topology, service: ServicePlan, lines: int = 50) -> list[str]:
        container = self._container(self.container_names(topology, service)[0])
        if container is None:
            return []
        text = container.logs(tail=lines).decode("utf-8", "replace")
        return [REDACT(line) for line in text.splitlines()]

    def teardown(self, topology: Topology) -> None:
        """Remove every container and the network of the package (tests, `deploy --down`)."""
        stack = self.stack(topology)
        for container in self._client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={stack}"}):
            container.remove(force=True)
        for network in self._client.networks.list(names=[stack]):
            network.remove()

    # -- internals -------------------------------------------------------------------------------

    def _network(self, stack: str) -> Any:
        found = [n for n in self._client.networks.list(names=[stack]) if n.name == stack]
        if found:
            return found[0]
        return self._client.networks.create(stack, driver="bridge", labels={LABEL_STACK: stack})

    @staticmethod
    def _mounted_files(containers: list[Any]) -> tuple[str | None, dict[str, str] | None]:
        """The config file the app containers mount (they all mount the same one), and each
        reading service's app config file (None when one of them cannot be read back)."""
        config: str | None = None
        app_configs: dict[str, str] | None = {}
        for container in containers:
            for mount in container.attrs.get("Mounts", []):
                if mount.get("Destination") == CONFIG_MOUNT and config is None:
                    config = read_mounted(mount["Source"])
                elif mount.get("Destination") == APP_CONFIG_MOUNT and app_configs is not None:
                    text = read_mounted(mount["Source"])
                    if text is None:
                        app_configs = None
                    else:
                        app_configs[container.labels[LABEL_SERVICE]] = text
        return config, app_configs

    def _ensure_image(self, image: str) -> None:
        """Pull `image` (by digest, as the gate pins it) when the engine does not hold it."""
        try:
            self._client.images.get(image)
            return
        except NotFound:
            pass
        auth = None
        if self._registry_credentials:
            auth = {"username": self._registry_credentials[0], "password": self._registry_credentials[1]}
        try:
            self._client.images.pull(image, auth_config=auth)
        except NotFound:
            raise PermanentError(
                f"{image} is not in the registry any more (pruned?): nothing to deploy"
            ) from None

    def _own_volume(self, stack: str, volume: str, image: str) -> None:
        """Give a named volume's root to the app user (images run as APP_UID; Docker makes a new
        volume root's). A one-shot container of an app image with CHOWN only, no network, and
        `python3 -I -S` so nothing of the image's PYTHONPATH runs as root."""
        self._client.containers.run(
            image,
            entrypoint=["python3", "-I", "-S", "-c"],
            command=[f"import os; os.chown('/volume', {APP_UID}, {APP_UID})"],
            user="0:0",
            cap_drop=["ALL"],
            cap_add=["CHOWN"],
            security_opt=[NO_NEW_PRIVILEGES],
            network_mode="none",
            read_only=True,
            volumes={f"{stack}-{volume}": {"bind": "/volume", "mode": "rw"}},
            labels={LABEL_STACK: f"{stack}-init"},
            remove=True,
        )

    def _unchanged(self, name: str, spec: str) -> bool:
        """Is the container made of `spec`, running, and never restarted (else it is recreated)?"""
        container = self._container(name)
        if container is None or container.labels.get(LABEL_SPEC) != spec:
            return False
        state = container.attrs["State"]
        return (
            bool(state.get("Running"))
            and not state.get("Restarting")
            and not container.attrs.get("RestartCount")
        )

    def _start(
        self, name: str, svc: ServicePlan, options: dict[str, Any], spec: str, revision: int, stack: str
    ) -> None:
        labels = {
            **options["labels"],
            LABEL_STACK: stack,
            LABEL_SERVICE: svc.name,
            LABEL_IMAGE: options["image"],
            LABEL_REVISION: str(revision),
            LABEL_SPEC: spec,
        }
        container = self._client.containers.create(
            name=name,
            **{**options, "labels": labels},
            networking_config={
                options["network"]: self._client.api.create_endpoint_config(aliases=[svc.dns_name])
            },
            detach=True,
        )
        container.start()

    def _remove(self, name: str) -> None:
        container = self._container(name)
        if container is not None:
            container.stop(timeout=STOP_TIMEOUT_S)
            container.remove(force=True)

    def _remove_strays(self, topology: Topology) -> list[str]:
        wanted = {n for svc in topology.services for n in self.container_names(topology, svc)}
        stray = [
            c
            for c in self._client.containers.list(
                all=True, filters={"label": f"{LABEL_STACK}={self.stack(topology)}"}
            )
            if c.name not in wanted
        ]
        for container in stray:
            container.remove(force=True)
        return [c.name for c in stray]

    def _container(self, name: str) -> Any:
        try:
            return self._client.containers.get(name)
        except NotFound:
            return None
