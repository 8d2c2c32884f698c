"""The compose substrate, for real on a Docker Engine through the docker SDK.

One network per package (`{prefix}{package}`), one container per service replica, each with the
trimmed config and the package's own two key files mounted read-only (a copy in the deployer's
state dir, never the operator's keys directory, which may hold other packages' keys), confined as
services.deployer.scaffold.hardening says (no capabilities, read-only root, limits). Services are
replaced one at a time (infra first), so the others keep running. Every container carries its
release in labels: the image reference and revision of what runs are read back from the engine,
and the config it runs with from the file it mounts, which is how a failed release is rolled back
to the previous images and config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

from services.deployer.ports import Release
from services.deployer.scaffold import ScaffoldInputs
from services.deployer.scaffold.hardening import (
    APP_UID,
    NO_NEW_PRIVILEGES,
    docker_create_options,
    key_files,
)
from services.deployer.topology import CONFIG_MOUNT, KEYS_MOUNT, ServicePlan, Topology
from shared.bus import PermanentError, TransientError
from shared.logging import REDACT

LABEL_STACK = "dev.kiln.stack"
LABEL_SERVICE = "dev.kiln.service"
LABEL_IMAGE = "dev.kiln.image"
LABEL_REVISION = "dev.kiln.revision"
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
        try:
            network = self._network(stack)
            config_file = self._write_config(stack, inputs)
            keys_dir = self._copy_keys(stack, inputs)
            # Every image is here before any container is replaced: a failed pull leaves the
            # running release as it was.
            for image in sorted(set(inputs.images.values())):
                self._ensure_image(image)
            # one app image per mounted volume (any image of the package has python3)
            mounted = {v.dns_name: inputs.images[a.name] for a in topology.apps for v in a.volumes}
            for volume, image in sorted(mounted.items()):
                self._own_volume(stack, volume, image)
            started = []
            for svc in topology.services:
                for name in self.container_names(topology, svc):
                    self._remove(name)
                    self._start(name, svc, inputs, revision, network.name, config_file, keys_dir)
                    started.append(name)
            removed = self._remove_strays(topology)
        except APIError as exc:
            raise TransientError(f"Docker Engine refused the deploy of {stack}: {exc.explanation}") from exc
        return {"network": stack, "containers": started, "removed": removed}

    def current(self, topology: Topology) -> Release | None:
        containers = self._client.containers.list(
            all=True, filters={"label": f"{LABEL_STACK}={self.stack(topology)}"}
        )
        if not containers:
            return None
        images = {c.labels[LABEL_SERVICE]: c.labels[LABEL_IMAGE] for c in containers}
        revision = max(int(c.labels.get(LABEL_REVISION, 0)) for c in containers)
        return Release(topology.package, revision, images, self._mounted_config(containers))

    def rollback(self, restored: ScaffoldInputs, previous: Release) -> dict[str, Any]:
        # Every container is recreated, so each one starts with the restored config file mounted.
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
    def _mounted_config(containers: list[Any]) -> str | None:
        """The config file the running app containers mount (they all mount the same one)."""
        for container in containers:
            for mount in container.attrs.get("Mounts", []):
                if mount.get("Destination") == CONFIG_MOUNT:
                    try:
                        return Path(mount["Source"]).read_text(encoding="utf-8")
                    except OSError:
                        return None  # state dir wiped: the rollback keeps the current config
        return None

    def _stack_dir(self, stack: str) -> Path:
        directory = self._state_dir / stack
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)  # holds the key copies: nobody else on the host walks into it
        return directory

    def _copy_keys(self, stack: str, inputs: ScaffoldInputs) -> Path:
        """This package's two key files only, readable by the app user inside its containers (the
        0700 stack directory keeps them from other users of the host)."""
        source = Path(inputs.keys_dir).expanduser()
        target = self._stack_dir(stack) / "keys"
        target.mkdir(exist_ok=True)
        target.chmod(0o755)
        wanted = key_files(inputs.topology.package)
        for stale in target.iterdir():
            if stale.name not in wanted:
                stale.unlink()
        for name in wanted:
            try:
                data = (source / name).read_bytes()
            except OSError as exc:
                package = inputs.topology.package
                raise PermanentError(
                    f"packages.{package}.keys.dir: cannot read {name} ({exc}); "
                    f"create them: python -m shared.config keys generate --package {package}"
                ) from None
            copy = target / name
            copy.unlink(missing_ok=True)
            copy.write_bytes(data)
            copy.chmod(0o444)
        return target

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

    def _write_config(self, stack: str, inputs: ScaffoldInputs) -> Path:
        # One file per config version: a rollback still finds the file its containers mount.
        directory = self._stack_dir(stack)
        path = directory / f"config-{inputs.config_checksum.split(':')[1][:16]}.json"
        if not path.exists():
            path.write_text(inputs.config_json, encoding="utf-8")
        return path

    def _start(
        self,
        name: str,
        svc: ServicePlan,
        inputs: ScaffoldInputs,
        revision: int,
        network: str,
        config_file: Path,
        keys_dir: Path,
    ) -> None:
        stack = self.stack(inputs.topology)
        image = inputs.images[svc.name]
        volumes: dict[str, dict[str, str]] = {}
        environment = dict(svc.env)
        if svc.kind == "app":
            volumes[str(config_file)] = {"bind": CONFIG_MOUNT, "mode": "ro"}
            volumes[str(keys_dir)] = {"bind": KEYS_MOUNT, "mode": "ro"}
            environment = {"KILN_CONFIG": CONFIG_MOUNT, "KILN_KEYS_DIR": KEYS_MOUNT, **environment}
        for volume in svc.volumes:
            # nocopy: an image directory at the mount point must not hand the volume back to root
            volumes[f"{stack}-{volume.dns_name}"] = {"bind": volume.mount, "mode": "rw,nocopy"}
        if svc.port is not None:
            environment.setdefault("PORT", str(svc.port))
        container = self._client.containers.create(
            image,
            # A Kiln-built image carries its command (through the launcher compiled modules need);
            # only infra images from elsewhere get the configured command.
            command=list(svc.command) if svc.kind == "infra" and svc.command else None,
            name=name,
            environment=environment,
            labels={
                LABEL_STACK: stack,
                LABEL_SERVICE: svc.name,
                LABEL_IMAGE: image,
                LABEL_REVISION: str(revision),
            },
            volumes=volumes,
            network=network,
            networking_config={network: self._client.api.create_endpoint_config(aliases=[svc.dns_name])},
            restart_policy={"Name": "unless-stopped"},
            detach=True,
            **docker_create_options(svc.kind, inputs.workload(svc.name)),
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
