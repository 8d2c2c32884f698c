from core.checks import Check, run_checks
from core.scheduler import plan
from core.text import checksum, slugify, word_count


def test_slugify_and_checksum():
    assert slugify("Feature/New_UI!") == "feature-new-ui"
    assert checksum(b"kiln") == checksum(b"kiln") != checksum(b"Kiln")
    assert word_count("one two  three") == 3


def test_plan_fires_each_job_on_its_interval():
    assert plan({"fast": 2.0, "slow": 3.0}, 0.0, 7.0) == [
        (2.0, "fast"),
        (3.0, "slow"),
        (4.0, "fast"),
        (6.0, "slow"),
        (6.0, "fast"),
    ]


def test_run_checks_counts_failures_and_exceptions():
    result = run_checks(
        [
            Check("ok", lambda: 1, 1),
            Check("wrong", lambda: 2, 1),
            Check("raises", lambda: 1 / 0, 1),
        ]
    )
    assert result["summary"] == {"total": 3, "passed": 1, "pass_rate": 33.3}
    assert [a["passed"] for a in result["assertions"]] == [True, False, False]
    assert "ZeroDivisionError" in result["assertions"][2]["detail"]


def test_app_config_environment_beats_the_mounted_file(tmp_path):
    from core.app_config import load_app_config

    mounted = tmp_path / "app-config.json"
    mounted.write_text(
        '{"database": {"host": "db", "port": 5432, "tls": false}, "rate_limit": {"max": 1.5},'
        ' "rate": {"limit_max": 1}, "mqtt": {"broker": "${HOME}"}}'
    )
    env = {
        "KILN_APP_CONFIG": str(mounted),
        "DEMO_DATABASE_HOST": "db2",
        "DEMO_DATABASE_PORT": "5433",
        "DEMO_DATABASE_TLS": "true",
        "DEMO_DATABASE_PASSWORD": "from-the-operator",
        "DEMO_RATE_LIMIT_MAX": "2.5",
        "DEMO_NOSUCH_OPTION": "ignored",
        "OTHER_DATABASE_HOST": "ignored",
    }
    config = load_app_config("DEMO", env)
    assert config["database"] == {"host": "db2", "port": 5433, "tls": True, "password": "from-the-operator"}
    assert config["rate_limit"] == {"max": 2.5} and config["rate"] == {"limit_max": 1}
    assert config["mqtt"] == {"broker": "${HOME}"}  # never expanded
    assert "nosuch" not in config
    assert load_app_config("DEMO", {}) == {}
