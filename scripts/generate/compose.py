"""docker-compose.yml's Kiln services (and broker-users, which lists them) from shared.processes.

The infrastructure above the GENERATED marker (rabbitmq, mysql, registry, mailpit, engine,
migrate, the x- anchors) is kept as written; everything from the marker on is rewritten."""

from __future__ import annotations

from shared.processes import ServiceProcesses

MARKER = (
    "  # ---- GENERATED from here by `python -m scripts.generate` (shared/processes.py): do not edit ----"
)
OFFLINE_MARKER = "  # ---- GENERATED: Kiln's own services (`python -m scripts.generate`) ----"
# Named volumes of the static part, before those the services' profiles add.
INFRA_VOLUMES = ("rabbitmq-data", "mysql-data", "registry-data", "engine-data", "deployer-state")
GATEWAY_PORT = 8000


def _head(text: str, marker: str) -> str:
    if marker not in text:
        raise ValueError(f"the marker line is missing: {marker!r}")
    return text[: text.index(marker) + len(marker)] + "\n"


def _required(key: str) -> str:
    return f"${{{key}:?set {key} in .env}}"


def _amqp_password(service: str) -> str:
    return f"KILN_AMQP_PASSWORD_{service.upper()}"


def _broker_users(processes: tuple[ServiceProcesses, ...]) -> list[str]:
    count = len(processes)
    lines = [
        "",
        "  # One broker user per Kiln service, with only the grants its topology entry gives it, and the",
        '  # whole topology declared once by the admin (docs/operations.md, "Broker users"). Runs with the',
        f"  # admin's credentials and the {count} service passwords, nothing else.",
        "  broker-users:",
        "    image: kiln:local",
        "    build: .",
        '    restart: "no"',
        '    command: ["python", "-m", "shared.bus", "provision", "--passwords-from-env"]',
        "    environment:",
        f"      KILN_BROKER_ADMIN_URL: amqp://kiln:{_required('RABBITMQ_PASSWORD')}@rabbitmq:5672/",
        f"      KILN_BROKER_MANAGEMENT_URL: http://kiln:{_required('RABBITMQ_PASSWORD')}@rabbitmq:15672",
    ]
    lines += [f"      {_amqp_password(p.service)}: {_required(_amqp_password(p.service))}" for p in processes]
    lines += [
        "    healthcheck: {disable: true}",
        "    depends_on:",
        "      rabbitmq: {condition: service_healthy}",
    ]
    return lines


def _command(process: ServiceProcesses, arch: str | None) -> str:
    args = ["python", *process.args(arch, host="0.0.0.0", port=GATEWAY_PORT)]
    return "[" + ", ".join(f'"{arg}"' for arg in args) + "]"


def _service(process: ServiceProcesses, name: str, arch: str | None) -> list[str]:
    profile = process.profile
    lines = ["", *(f"  # {line}" for line in profile.note if arch in (None, process.architectures[0]))]
    lines += [f"  {name}:", "    <<: *kiln", f"    command: {_command(process, arch)}"]
    if profile.sandbox:
        lines.append("    security_opt: *sandbox-host")
    if profile.docker:
        lines.append("    network_mode: service:engine")
    if profile.user:
        lines.append(f"    user: {profile.user}")
    lines.append("    environment:")
    lines.append("      <<: [*kiln-env, *engine-client]" if profile.docker else "      <<: *kiln-env")
    password = _amqp_password(process.service)
    lines.append(f"      KILN_AMQP_URL: amqp://kiln-{process.service}:{_required(password)}@rabbitmq:5672/")
    if profile.health_port:
        lines.append(f'      KILN_HEALTH_PORT: "{profile.health_port}"')
    lines += [f"      {key}: {value}" for key, value in profile.env]
    if profile.http:
        lines.append(f'    ports: ["${{KILN_GATEWAY_PORT:-{GATEWAY_PORT}}}:{GATEWAY_PORT}"]')
    port = GATEWAY_PORT if profile.http else profile.health_port
    if port:
        lines += [
            "    healthcheck:",
            "      <<: *worker-health",
            f'      test: ["CMD", "kiln-healthcheck", "http", "{port}"]',
        ]
    if profile.volumes:
        lines.append("    volumes:")
        lines += [f"      - {volume}" for volume in profile.volumes]
    extra = (*(("engine",) if profile.docker else ()), *profile.depends_on)
    if extra:
        lines += ["    depends_on:", "      <<: *kiln-deps"]
        lines += [f"      {dependency}: {{condition: service_healthy}}" for dependency in extra]
    return lines


def _volumes(processes: tuple[ServiceProcesses, ...]) -> list[str]:
    names = list(INFRA_VOLUMES)
    for process in processes:
        for volume in process.profile.volumes:
            source = volume.split(":", 1)[0]
            if not source.startswith(("$", ".", "/")) and source not in names:
                names.append(source)
    return ["", "volumes:", *(f"  {name}:" for name in names)]


def render_compose(text: str, processes: tuple[ServiceProcesses, ...]) -> str:
    lines = _broker_users(processes)
    for process in processes:
        archs = process.architectures if process.per_arch else (None,)
        for name, arch in zip(process.names, archs, strict=True):
            lines += _service(process, name, arch)
    return _head(text, MARKER) + "\n".join(lines) + "\n" + "\n".join(_volumes(processes)) + "\n"


def render_offline(text: str, processes: tuple[ServiceProcesses, ...]) -> str:
    """docker-compose.offline.yml builds every Kiln container offline: the same list of names."""
    head = _head(text, OFFLINE_MARKER)
    rest = text[len(head) :]
    tail = rest[rest.index("\nvolumes:") :]
    names = ["broker-users", *(name for process in processes for name in process.names)]
    return head + "".join(f"  {name}: *kiln-offline\n" for name in names) + tail


ENV_EXAMPLE_ANCHOR = "# One broker user per service"


def render_env_example(text: str, processes: tuple[ServiceProcesses, ...]) -> str:
    """.env.example: one KILN_AMQP_PASSWORD_<SERVICE>= line per service, after the anchor comment."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(ENV_EXAMPLE_ANCHOR)) + 1
    end = start
    while lines[end].startswith("KILN_AMQP_PASSWORD_"):
        end += 1
    lines[start:end] = [f"{_amqp_password(p.service)}=" for p in processes]
    return "\n".join(lines)
