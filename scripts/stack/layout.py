"""Where everything of a local stack lives, how its services are configured, start and stop."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pymysql

from scripts.stack import processes
from scripts.stack.example import DEMO, Example
from scripts.stack.processes import ROOT, Process
from shared.processes import ServiceProcesses, service_processes

EXAMPLE_CONFIG = DEMO.operator_config
# Kiln's own processes, from the specs (shared/processes.py): the same as docker-compose.yml's.
KILN_PROCESSES = service_processes()
SERVICES = tuple(name for process in KILN_PROCESSES for name in process.names)


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


@dataclass
class Stack:
    state: Path
    vhost: str
    database: str
    gateway_port: int
    smtp_port: int
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    # Extra KILN_* settings for every service (e.g. other cache directories for a benchmark).
    overrides: dict[str, str] = field(default_factory=dict)
    # Kiln's own processes (a test passes others: a hypothetical service).
    kiln_processes: tuple[ServiceProcesses, ...] = KILN_PROCESSES
    # The package it builds: the services run with its operator config (scripts/stack/example.py).
    example: Example = DEMO

    # -- where things are ---------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def repo(self) -> Path:
        return self.state / self.example.repo_dir

    @property
    def keys_dir(self) -> Path:
        return self.state / "keys" / self.example.package

    @property
    def mail_dir(self) -> Path:
        return self.state / "mail"

    @property
    def amqp_url(self) -> str:
        base = urlsplit(self.env.get("KILN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
        return urlunsplit(base._replace(path="/" + self.vhost))

    @property
    def broker_users(self) -> Path:
        """Each service's KILN_AMQP_URL with its own broker user (`python -m shared.bus provision`)."""
        return self.state / "broker-users"

    def service_amqp_url(self, process: str) -> str:
        """The URL of the process's own broker user (imager-arm64 -> imager's); the admin URL
        (`amqp_url`, the stack's own tools) for a process of no Kiln service."""
        from shared.bus.provision import credentials_file, read_password, service_url

        service = process.split("-", 1)[0]
        password = read_password(credentials_file(self.broker_users, service))
        if password is None:
            return self.amqp_url
        return service_url(self.amqp_url, self.vhost, self.broker_user(service), password, None)

    def broker_user(self, service: str) -> str:
        return f"{self.vhost}-{service}"

    @property
    def database_url(self) -> str:
        base = urlsplit(self.env.get("KILN_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/"))
        return urlunsplit(base._replace(path="/" + self.database, query="charset=utf8mb4"))

    def secrets(self) -> dict[str, str]:
        """Generated once per state dir (mode 600): the API token and the webhook secret."""
        path = self.state / "secrets.json"
        if not path.is_file():
            self.state.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(
                    {"api_token": secrets.token_urlsafe(24), "webhook_secret": secrets.token_urlsafe(24)}
                )
            )
            path.chmod(0o600)
        return json.loads(path.read_text())

    # -- configuration of every process ----------------------------------------------------------

    def service_env(self) -> dict[str, str]:
        keep = {k: v for k, v in self.env.items() if not k.startswith("KILN_")}
        dev = {k: v for k, v in self.env.items() if k.startswith(("KILN_REGISTRY", "KILN_BASE_IMAGE"))}
        shared_secrets = self.secrets()
        return {
            **keep,
            **dev,
            "PYTHONUNBUFFERED": "1",
            "KILN_AMQP_URL": self.amqp_url,
            "KILN_DATABASE_URL": self.database_url,
            "KILN_CONFIG_PATH": str(self.example.operator_config),
            # config overrides (docs/configuration.md): keys outside the tree, clone the local repo
            # (short forms: every package of the file, and each example's file has one package)
            "KILN_KEYS_DIR": str(self.keys_dir),
            "KILN_WEBHOOKS_CLONE_URL": f"file://{self.repo}",
            "KILN_WEBHOOKS_ALLOW_FILE": "true",  # a local path is a source only when allowed
            "KILN_API_TOKEN": shared_secrets["api_token"],
            "KILN_BITBUCKET_CLOUD_SECRET": shared_secrets["webhook_secret"],
            "KILN_TRIVY": self.env.get("KILN_TRIVY", str(ROOT / ".venv" / "bin" / "trivy")),
            "KILN_TRIVY_DB_DOWNLOAD": "false",
            "KILN_SMTP_HOST": "127.0.0.1",
            "KILN_SMTP_PORT": str(self.smtp_port),
            "KILN_SMTP_STARTTLS": "false",
            "KILN_BUILD_URL_TEMPLATE": f"{self.gateway_url}/ui/builds/{{build_id}}",
            "KILN_DEPLOYER_NAME_PREFIX": self.prefix,
            "KILN_DEPLOYER_STATE_DIR": str(self.state / "deployer"),
            **self.attest_env(),
            **self.overrides,
        }

    def attest_env(self) -> dict[str, str]:
        """The attester's signing keys (made once per state dir, as an operator would with
        `python -m services.attester keys generate`) and the public keys the deployer checks."""
        from services.attester import keys

        directory = self.state / "attest"
        if not (directory / keys.COSIGN_KEY).exists():
            keys.generate(directory)
        made = keys.GeneratedKeys(
            directory,
            directory / keys.GPG_HOME,
            keys.gpg_fingerprint(directory / keys.GPG_HOME),
            directory / keys.GPG_PUBLIC,
            directory / keys.COSIGN_KEY,
            directory / keys.COSIGN_PUBLIC,
        )
        env = dict(line.split("=", 1) for line in made.settings_lines())
        return {**env, "KILN_ATTEST_LOOKASIDE_DIR": str(directory / "sigstore")}

    @property
    def workers(self) -> tuple[str, ...]:
        """The processes with a health port: every Kiln process but the gateway (HTTP itself)."""
        return tuple(name for p in self.kiln_processes if not p.profile.http for name in p.names)

    def health_ports(self) -> dict[str, int]:
        """Each worker's /healthz and /readyz port (KILN_HEALTH_PORT), chosen once per state dir
        (a worker new since then gets one too)."""
        saved = self.state / "health-ports.json"
        ports = json.loads(saved.read_text()) if saved.is_file() else {}
        if all(name in ports for name in self.workers):
            return ports
        ports |= {name: _free_port() for name in self.workers if name not in ports}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(ports))
        return ports

    def process_table(self) -> list[Process]:
        ports = self.health_ports()

        def env(name: str) -> dict[str, str]:
            """The gateway serves its own /readyz; every worker gets a health port."""
            if name not in self.workers:
                return {"KILN_AMQP_URL": self.service_amqp_url(name)}
            return {"KILN_HEALTH_PORT": str(ports[name]), "KILN_AMQP_URL": self.service_amqp_url(name)}

        return [
            Process(
                "mailcatcher",
                ["scripts/stack/mailcatcher.py", "--port", str(self.smtp_port), "--dir", str(self.mail_dir)],
            ),
            *(
                Process(name, process.args(arch, host="127.0.0.1", port=self.gateway_port), env(name))
                for process in self.kiln_processes
                for name, arch in zip(process.names, _archs(process), strict=True)
            ),
        ]

    def not_ready(self) -> list[str]:
        """The services whose /readyz does not answer 200 yet (broker, and database where used)."""
        urls = {"gateway": f"{self.gateway_url}/readyz"}
        for process in self.process_table():  # the table a subclass runs, not every worker
            if "KILN_HEALTH_PORT" in process.env:
                urls[process.name] = f"http://127.0.0.1:{process.env['KILN_HEALTH_PORT']}/readyz"
        waiting = []
        for name, url in urls.items():
            try:
                if httpx.get(url, timeout=2).status_code != 200:
                    waiting.append(name)
            except httpx.HTTPError:
                waiting.append(name)
        return waiting

    # -- lifecycle --------------------------------------------------------------------------------

    def prepare(self) -> None:
        from shared.config import generate_keys
        from shared.db import upgrade

        say(f"RabbitMQ vhost {self.vhost}, MariaDB database {self.database}")
        for args in (
            ["add_vhost", self.vhost],
            [
                "set_permissions",
                "-p",
                self.vhost,
                urlsplit(self.amqp_url).username or "guest",
                ".*",
                ".*",
                ".*",
            ],
        ):
            result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True)
            if result.returncode != 0 and "already exists" not in result.stdout + result.stderr:
                raise SystemExit(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
        self.provision_broker_users()
        parts = urlsplit(self.database_url)
        with (
            pymysql.connect(
                host=parts.hostname,
                port=parts.port or 3306,
                user=parts.username or "root",
                password=parts.password or "",
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4")
        upgrade(self.database_url)
        package = self.example.package
        if not (self.keys_dir / f"{package}_private.pem").is_file():
            say(f"PEM keys of package {package} in {self.keys_dir} (outside the source tree)")
            generate_keys(self.keys_dir, package)
        from scripts.stack.example import prepare_repo

        prepare_repo(self.repo, self.example.source)

    def provision_broker_users(self) -> None:
        """One broker user per service, as in production (docs/operations.md "Broker users"):
        the stack's processes run with the grants a real deployment gives them."""
        import asyncio

        from shared.bus.provision import ProvisionError, RabbitmqctlAdmin, provision

        say(f"broker users {self.broker_user('<service>')} (credentials in {self.broker_users})")
        try:
            asyncio.run(
                provision(
                    self.amqp_url,
                    RabbitmqctlAdmin(),
                    credentials_dir=self.broker_users,
                    user_prefix=f"{self.vhost}-",
                    # The dev stack's operator (you) opts in to replaying any stage, so that
                    # `kiln replay <build> --from scan` works as the README shows; production
                    # provisioning grants it only with --allow-stage-replay (docs/operations.md).
                    allow_stage_replay=True,
                )
            )
        except ProvisionError as exc:
            raise SystemExit(f"provisioning the broker users failed: {exc}") from None

    def remove_broker_users(self) -> None:
        """Users are broker-wide, not per vhost: `down` removes the stack's (`start` makes them again)."""
        for path in sorted(self.broker_users.glob("*.env")):
            subprocess.run(
                ["rabbitmqctl", "-q", "delete_user", self.broker_user(path.stem)], capture_output=True
            )

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.prepare()
        alive = self._running_for_this_package()
        env = self.service_env()
        for process in self.process_table():
            if process.name in alive:
                continue
            say(f"starting {process.name}")
            processes.start(process, self.state, env)
        self.wait_ready()

    def _running_for_this_package(self) -> dict[str, int]:
        """The processes already running, once they run this package's operator config: started
        for another package (`up` then `up --package axion-like`), they are stopped first."""
        record = self.state / "package"
        alive = processes.running(self.state)
        before = record.read_text().strip() if record.is_file() else DEMO.package
        if alive and before != self.example.package:
            say(f"the services run {before}'s operator config: restarting them for {self.example.package}")
            processes.stop_all(self.state)
            alive = {}
        record.write_text(self.example.package + "\n")
        return alive

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [p.name for p in self.process_table() if p.name not in processes.running(self.state)]
            if dead:
                tail = processes.log_tail(self.state, dead[0])
                raise SystemExit(f"{dead[0]} exited at start; its log ({self.state}/logs):\n{tail}")
            waiting = self.not_ready()
            if not waiting:
                say(f"every service is up; gateway at {self.gateway_url}")
                return
            time.sleep(1)
        raise SystemExit(
            f"not ready after {timeout_s:.0f}s: {', '.join(waiting)}; see {self.state}/logs/{waiting[0]}.log"
        )

    def down(self) -> None:
        stopped = processes.stop_all(self.state)
        say(f"stopped {', '.join(stopped) or 'nothing (no process was running)'}")
        self.remove_broker_users()
        import docker

        client = docker.from_env()
        for container in client.containers.list(all=True):
            if container.name.startswith(self.prefix):
                container.remove(force=True)
                say(f"removed container {container.name}")

    def print_status(self) -> None:
        alive = processes.running(self.state)
        for process in self.process_table():
            state = f"pid {alive[process.name]}" if process.name in alive else "stopped"
            print(f"  {process.name:14} {state:12} log: {self.state}/logs/{process.name}.log")
        print(f"  dashboard: {self.gateway_url}/   mail: {self.mail_dir}")

    def print_summary(self, build_id: str, status: str) -> None:
        report = self.report_of(build_id)
        print()
        say(f"build {build_id} {status}")
        print(f"    dashboard: {self.gateway_url}/ui/builds/{build_id}")
        print(f"    report:    {report or '(no email yet: see ' + str(self.mail_dir) + ')'}")
        print(f"    logs:      {self.state}/logs/")
        print("    stop with: ./kiln-dev down")

    def report_of(self, build_id: str, wait_s: float = 15.0) -> Path | None:
        """The build's HTML report in the mail catcher. The reporter mails after build.finished,
        which is what the caller just saw, so the mail may still be on its way: wait a little."""
        deadline = time.monotonic() + wait_s
        while True:
            for report in sorted(self.mail_dir.glob("*.html"), reverse=True):
                if build_id in report.read_text(encoding="utf-8", errors="replace"):
                    return report
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def _archs(process: ServiceProcesses) -> tuple[str | None, ...]:
    return process.architectures if process.per_arch else (None,)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
