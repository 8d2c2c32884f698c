"""docker-compose.yml is valid for Docker Compose, complete, and refuses to start without secrets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
SECRETS = {"RABBITMQ_PASSWORD": "r-test", "MYSQL_PASSWORD": "m-test", "MYSQL_ROOT_PASSWORD": "mr-test"}


def compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [
            "docker-compose",
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--env-file",
            str(empty_env_file),
            "config",
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_and_has_the_whole_stack(tmp_path):
    result = compose_config(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    expected = {"rabbitmq", "mysql", "registry", "mailpit", "migrate", "gateway", "compiler", "scanner"}
    expected |= {"deployer", "reporter", "imager-amd64", "imager-arm64"}
    assert expected <= set(services)
    for name in ("gateway", "compiler", "scanner", "deployer", "reporter", "imager-amd64", "imager-arm64"):
        service = services[name]
        assert "healthcheck" in service, name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        module = service["command"][2]
        assert (ROOT / module.replace(".", "/")).is_dir(), f"{name} runs {module}, which does not exist"
    assert services["imager-arm64"]["command"][-1] == "linux/arm64"


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    result = compose_config(tmp_path, {})
    assert result.returncode != 0
    assert "set RABBITMQ_PASSWORD in .env" in result.stderr


def test_no_secret_value_is_written_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for value in SECRETS.values():
        assert value not in text
    assert "PASSWORD: ${" in text  # every password is substituted from the environment
