"""How a deployed container is confined, decided once for the compose substrate, the generated
compose file and the chart (docs/deployer.md "Workload hardening").

App containers run Kiln-built images, whose USER is APP_UID: they get no capabilities, no
privilege gain through setuid binaries, a read-only root (tmpfs /tmp, volumes writable) unless the
operator sets `deployment.workloads.<service>.writable_root`, and CPU, memory and pid limits.
Infra containers (third-party images such as MongoDB, Redis) start as root and step down to their
own user themselves, so they keep their capabilities and root filesystem but get
no-new-privileges and the same limits.
"""

from __future__ import annotations

from typing import Any

from shared.config.sections import WorkloadConfig

# The USER of every Kiln-built image (services/imager/templates/Dockerfile.j2): no passwd entry needed.
APP_UID = 65532
TMP_MOUNT = "/tmp"
TMPFS_OPTIONS = "rw,nosuid,nodev,noexec,size=64m"
NO_NEW_PRIVILEGES = "no-new-privileges:true"


def key_files(package: str) -> tuple[str, str]:
    """The only key files a package's containers see: its own pair, never the whole keys directory."""
    return f"{package}_private.pem", f"{package}_public.pem"


def docker_memory(memory: str) -> str:
    """`512Mi` → `512m`, `2Gi` → `2g` (Docker's binary units)."""
    return memory[:-2] + memory[-2].lower()


def docker_create_options(kind: str, workload: WorkloadConfig) -> dict[str, Any]:
    """Keyword arguments of docker SDK `containers.create` for one container."""
    options: dict[str, Any] = {
        "security_opt": [NO_NEW_PRIVILEGES],
        "nano_cpus": int(workload.cpus * 1_000_000_000),
        "mem_limit": docker_memory(workload.memory),
        "pids_limit": workload.pids,
    }
    if kind == "app":
        options["cap_drop"] = ["ALL"]
        options["read_only"] = not workload.writable_root
        options["tmpfs"] = {TMP_MOUNT: TMPFS_OPTIONS}
    return options


def pod_security_context() -> dict[str, Any]:
    """Pod level: the app user, and volumes (PVCs, the keys Secret) group-owned by it (fsGroup)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": APP_UID,
        "runAsGroup": APP_UID,
        "fsGroup": APP_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(workload: WorkloadConfig) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": not workload.writable_root,
        "runAsNonRoot": True,
    }


def container_resources(workload: WorkloadConfig) -> dict[str, Any]:
    """Requests a quarter of the limits: the scheduler packs, the limit caps a runaway service."""
    millicpu = int(workload.cpus * 1000)
    number, unit = int(workload.memory[:-2]), workload.memory[-2:]
    return {
        "limits": {"cpu": f"{millicpu}m", "memory": workload.memory},
        "requests": {"cpu": f"{max(millicpu // 4, 10)}m", "memory": f"{max(number // 4, 1)}{unit}"},
    }
