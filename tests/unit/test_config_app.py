"""packages.<p>.app_config and app_secrets: the operator's keys, checked without the file (which
service reads which section, env entries and secrets named `<PREFIX>_<SECTION>_…`), and the
repository's file trimmed and checked at stage config (shared/config/app_config.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from shared.config import ConfigError, parse_config, trimmed_config
from shared.config.app_config import (
    decode_document,
    secret_receivers,
    service_view,
    split_env_name,
    trimmed_document,
)
from tests.unit.app_config_fixtures import APP_YAML, app_config, document, operator_data


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as failure:
        parse_config(yaml.safe_dump(data), {"KILN_KEYS_DIR": "/tmp/k"})
    return dict(failure.value.errors)


def with_services(**changes) -> dict:
    data = operator_data()
    for service, values in changes.items():
        data["packages"]["demo"]["services"][service].update(values)
    return data


def test_the_example_with_app_config_on_is_valid_and_services_read_nothing_by_default():
    pkg = app_config().package("demo")
    assert pkg.app_config.path == "config/app.yaml" and pkg.app_config.env_prefix == "DEMO"
    assert pkg.services["scheduler"].app_config_sections == []
    assert {name: sorted(users) for name, users in secret_receivers(pkg).items()} == {
        "DEMO_DATABASE_PASSWORD": ["report", "webhook"]  # the readers of `database`
    }
    # Kiln's own trimmed config is unchanged: the app config is a file of its own
    assert "app_config" not in json.dumps(trimmed_config(app_config(), "demo"))


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (
            with_services(scheduler={"app_config_sections": ["nope"]}),
            "packages.demo.services.scheduler.app_config_sections[0]",
            "section 'nope' is not in packages.demo.app_config.sections (database, mqtt, report)",
        ),
        (
            with_services(webhook={"env": {"DEMO_DATABSE_HOST": "x"}}),
            "packages.demo.services.webhook.env.DEMO_DATABSE_HOST",
            "names no section service webhook reads (DEMO_<SECTION>_<OPTION>; its app_config_sections: "
            "database, mqtt)",
        ),
        (
            with_services(scheduler={"env": {"DEMO_DATABASE_HOST": "x"}}),
            "packages.demo.services.scheduler.env.DEMO_DATABASE_HOST",
            "names no section service scheduler reads (DEMO_<SECTION>_<OPTION>; its "
            "app_config_sections: none)",
        ),
        (
            with_services(webhook={"env": {"DEMO_DATABASE_PASSWORD": "in-a-file"}}),
            "packages.demo.services.webhook.env.DEMO_DATABASE_PASSWORD",
            "is also an app secret (app_secrets.DEMO_DATABASE_PASSWORD); a secret's value comes from the "
            "deployer's environment only: remove it from env",
        ),
        (
            operator_data(
                app_secrets={"MAPS_KEY": {"env": "KILN_REGISTRY_PASSWORD", "services": ["webhook"]}}
            ),
            "packages.demo.app_secrets.MAPS_KEY.env",
            "must not be a KILN_ variable: the deployer's own settings",
        ),
        (
            operator_data(app_secrets={"KILN_CONFIG": {"env": "X", "services": ["webhook"]}}),
            "packages.demo.app_secrets.KILN_CONFIG",
            "must not be a KILN_ variable",
        ),
        (
            operator_data(app_secrets={"DEMO_CACHE_URL": {"env": "X"}}),
            "packages.demo.app_secrets.DEMO_CACHE_URL",
            "starts with DEMO_ but names no section of app_config.sections (database, mqtt, report)",
        ),
        (
            operator_data(app_secrets={"MAPS_KEY": {"env": "X"}}),
            "packages.demo.app_secrets.MAPS_KEY.services",
            "MAPS_KEY names no app_config section (DEMO_<SECTION>_<OPTION>): list the services that get it",
        ),
        (
            operator_data(app_secrets={"MAPS_KEY": {"env": "X", "services": ["nobody"]}}),
            "packages.demo.app_secrets.MAPS_KEY.services[0]",
            "unknown service 'nobody'",
        ),
        (
            operator_data(app_secrets={"DEMO_MQTT_PASSWORD": {"env": "X", "services": ["report"]}}),
            "packages.demo.app_secrets.DEMO_MQTT_PASSWORD.services[0]",
            'service report does not read section "mqtt", so its reader would ignore DEMO_MQTT_PASSWORD',
        ),
        (
            operator_data(
                app_config={"path": "config/../../etc/app.yaml", "env_prefix": "DEMO", "sections": ["a", "A"]}
            ),
            "packages.demo.app_config.path",
            "must stay inside the repository (no '..')",
        ),
        (
            operator_data(app_config={"path": "a.yaml", "env_prefix": "KILN", "sections": ["database"]}),
            "packages.demo.app_config.env_prefix",
            "KILN is Kiln's own prefix",
        ),
        (
            operator_data(app_config={"path": "a.yaml", "env_prefix": "DE_MO", "sections": ["database"]}),
            "packages.demo.app_config.env_prefix",
            "must be an upper-case word like AXION",
        ),
        (
            operator_data(
                app_config={"path": "a.yaml", "env_prefix": "DEMO", "sections": ["rate-limit", "RATE_LIMIT"]}
            ),
            "packages.demo.app_config.sections",
            "must not repeat a section",
        ),
    ],
)
def test_each_mistake_is_one_error_naming_its_key(data, path, message):
    errors = errors_of(data)
    assert path in errors, errors
    assert message in errors[path], errors[path]


def test_a_section_reader_without_app_config_and_a_supervisor_package_are_refused():
    data = operator_data(app_secrets={})
    del data["packages"]["demo"]["app_config"]
    errors = errors_of(data)
    assert errors["packages.demo.services.webhook.app_config_sections"].startswith(
        "needs packages.demo.app_config"
    )
    supervisor = operator_data()
    supervisor["packages"]["demo"]["deployment"]["substrate"] = "supervisor"
    assert "does not mount an app config" in errors_of(supervisor)["packages.demo.app_config"]


def test_the_file_is_trimmed_to_the_listed_sections_and_nothing_in_it_is_expanded():
    cfg = app_config()
    body = json.loads(document(cfg))
    assert body["schema"] == 1 and body["package"] == "demo" and body["path"] == "config/app.yaml"
    assert sorted(body["sections"]) == ["database", "mqtt", "report"]  # local_dev is trimmed away
    assert body["sections"]["database"] == {"host": "db.demo.internal", "port": 5432, "name": "demo"}

    hostile = b'database: {host: "${KILN_REGISTRY_PASSWORD}", when: 2024-05-01}\nmqtt: {}\nreport: {}\n'
    sections = decode_document(trimmed_document(hostile, "demo", cfg.package("demo")))
    assert sections["database"] == {"host": "${KILN_REGISTRY_PASSWORD}", "when": "2024-05-01"}
    view = json.loads(service_view(sections, ["database", "mqtt"]))
    assert view == {"database": sections["database"], "mqtt": {}}


def test_a_listed_section_the_file_lacks_fails_naming_the_key_and_the_file():
    cfg = app_config()
    with pytest.raises(ConfigError) as failure:
        trimmed_document(b"database: {host: db}\nreport: {title: t}\n", "demo", cfg.package("demo"))
    assert (
        str(failure.value) == 'packages.demo.app_config.sections[1]: section "mqtt" is not in config/app.yaml'
    )


def test_an_env_entry_naming_an_option_the_file_lacks_fails_naming_the_entry():
    data = with_services(webhook={"env": {"DEMO_DATABASE_HOTS": "db2", "DEMO_MQTT_BROKER": "tcp://x"}})
    cfg = app_config(data=data)
    with pytest.raises(ConfigError) as failure:
        trimmed_document(APP_YAML.read_bytes(), "demo", cfg.package("demo"))
    assert failure.value.errors == [
        (
            "packages.demo.services.webhook.env.DEMO_DATABASE_HOTS",
            'names option HOTS, which section "database" of config/app.yaml does not have (its options: '
            "host, name, port)",
        )
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b'a: &a ["x","x"]\nb: [*a, *a]\n', "YAML anchors and aliases"),
        (b"database: !!python/object:os.system {}\n", "YAML tags"),
        (b"- database\n", "config/app.yaml must be a mapping of sections"),
        (
            b"database: [host]\nmqtt: {}\nreport: {}\n",
            'section "database" of config/app.yaml must be a mapping',
        ),
        (b"database: {1: x}\nmqtt: {}\nreport: {}\n", "option names must be strings (got 1)"),
        (b"database: {x: .nan}\nmqtt: {}\nreport: {}\n", "nan is not a number JSON can hold"),
        (b"database: {}\ndatabase: {}\nmqtt: {}\nreport: {}\n", "database: duplicate key (line 2)"),
        (b"x: " + b"a" * (256 * 1024), "a repository config may be at most 262144"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_a_hostile_or_malformed_file_is_refused_before_anything_is_built_from_it(text, error):
    with pytest.raises(ConfigError) as failure:
        trimmed_document(text, "demo", app_config().package("demo"))
    assert error in str(failure.value), str(failure.value)


def test_env_names_split_on_the_longest_section_first():
    sections = ["rate", "rate_limit", "db-main"]
    assert split_env_name("AX_RATE_LIMIT_MAX", "AX", sections) == ("rate_limit", "MAX")
    assert split_env_name("AX_RATE_BURST", "AX", sections) == ("rate", "BURST")
    assert split_env_name("AX_DB_MAIN_HOST", "AX", sections) == ("db-main", "HOST")
    assert split_env_name("AX_RATE_", "AX", sections) is None
    assert split_env_name("OTHER_RATE_X", "AX", sections) is None


def test_validate_checks_the_app_config_beside_the_repository_config(tmp_path, capsys):
    from shared.config.__main__ import main as cli
    from tests.unit.app_config_fixtures import EXAMPLE, write_operator

    operator = write_operator(tmp_path / "operator.yaml")
    repository = EXAMPLE / "config.yaml"
    assert cli(["validate", "--repository", str(repository), "--operator", str(operator)]) == 0
    (tmp_path / "repo" / "config").mkdir(parents=True)
    (tmp_path / "repo" / "config.yaml").write_bytes(repository.read_bytes())
    (tmp_path / "repo" / "config" / "app.yaml").write_text("database: {host: x}\nmqtt: {}\n")
    code = cli(
        ["validate", "--repository", str(tmp_path / "repo" / "config.yaml"), "--operator", str(operator)]
    )
    assert code == 2
    assert (
        'packages.demo.app_config.sections[2]: section "report" is not in config/app.yaml'
        in capsys.readouterr().err
    )
