"""Verify and rollback logic with fakes for the substrate and the HTTP probe."""

from __future__ import annotations

import json

from services.deployer.ports import Release, ReleaseFailed
from services.deployer.release import run_release
from services.deployer.scaffold import scaffold_inputs
from services.deployer.verify import harness_of
from shared.config.sections import VerifyConfig
from tests.unit.deployer_fixtures import shop_config

HARNESS = {
    "tests": {
        "summary": {"total": 4, "passed": 3, "pass_rate": 75.0},
        "assertions": [
            {"name": "a", "passed": True},
            {"name": "core.text.slugify", "passed": False, "detail": "expected 'x', got 'y'"},
        ],
    }
}


class FakeSubstrate:
    name = "compose"

    def __init__(self, broken_image: str, config_json: str | None = None, broken_config: str | None = None):
        self.broken_image = broken_image
        self.broken_config = broken_config
        self.release = Release(
            "shop",
            1,
            {"webhook": "good", "worker": "good", "redis": "redis:7", "mongodb": "mongo:7"},
            config_json,
        )
        self.applied = []
        self.configs = []

    def current(self, topology):
        return self.release

    def apply(self, inputs, revision):
        self.applied.append(dict(inputs.images))
        self.configs.append(inputs.config_json)
        self.release = Release("shop", revision, dict(inputs.images), inputs.config_json)
        return {}

    def rollback(self, restored, previous):
        return self.apply(restored, previous.revision)

    def endpoint(self, topology, service):
        return f"http://{service.dns_name}:{service.port}"

    def running(self, topology, service):
        return True, "running"

    def logs(self, topology, service, lines=50):
        return ["Traceback: boom"]


class FakeProbe:
    def __init__(self, substrate):
        self.substrate = substrate

    def get(self, url, timeout_s):
        release = self.substrate.release
        if release.images["webhook"] == self.substrate.broken_image or (
            self.substrate.broken_config and release.config_json == self.substrate.broken_config
        ):
            if url.endswith("/status"):
                return 200, json.dumps(HARNESS)
            return 200, '{"status": "ok"}'
        if url.endswith("/status"):
            return 200, json.dumps({"tests": {"summary": {"pass_rate": 100.0}, "assertions": []}})
        return 200, "ok"


def test_harness_is_read_and_failing_assertions_listed():
    rate, failing = harness_of(json.dumps(HARNESS))
    assert rate == 75.0 and failing == ("core.text.slugify: expected 'x', got 'y'",)
    assert harness_of('{"status": "ok"}') is None and harness_of("not json") is None


def test_below_threshold_rolls_back_to_previous_images_and_says_so():
    inputs = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "bad", "worker": "good"}
    )
    substrate = FakeSubstrate(broken_image="bad")
    sleeps = []
    outcome = run_release(
        inputs,
        substrate,
        FakeProbe(substrate),
        VerifyConfig(retries=3, delay_s=2, pass_threshold=90),
        sleeps.append,
    )
    assert not outcome.healthy
    assert outcome.deployed.revision == 2
    assert substrate.applied[-1]["webhook"] == "good"
    assert outcome.verified.rolled_back and outcome.verified.rollback_revision == 1
    webhook = next(c for c in outcome.verified.checks if c.service == "webhook")
    assert webhook.pass_rate == 75.0 and not webhook.healthy and webhook.failing_assertions
    assert "rolled back to revision 1, which is healthy" in outcome.error
    assert outcome.log_tail == ("[webhook] Traceback: boom",)
    assert sleeps[:3] == [2, 2, 2]  # three attempts for the broken release, delay before each


def test_healthy_release_is_not_rolled_back():
    inputs = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "good", "worker": "good"}
    )
    substrate = FakeSubstrate(broken_image="bad")
    outcome = run_release(
        inputs, substrate, FakeProbe(substrate), VerifyConfig(retries=3, delay_s=0), lambda s: None
    )
    assert outcome.healthy and outcome.rollback is None and outcome.verified.pass_rate == 100.0


def test_config_only_change_that_fails_verify_brings_the_previous_config_back():
    good = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "good", "worker": "good"}
    )
    # Same images, another config: only the ConfigMap / mounted file differs.
    changed = scaffold_inputs(
        shop_config({"KILN_FEATURES_REPORTS": "true"}),
        "shop",
        config_path="shop.yaml",
        env={},
        images={"webhook": "good", "worker": "good"},
    )
    assert changed.config_json != good.config_json
    substrate = FakeSubstrate(
        broken_image="bad", config_json=good.config_json, broken_config=changed.config_json
    )
    outcome = run_release(
        changed, substrate, FakeProbe(substrate), VerifyConfig(retries=2, delay_s=0), lambda s: None
    )
    assert not outcome.healthy
    assert substrate.configs == [changed.config_json, good.config_json]  # deployed, then restored
    assert substrate.release.config_json == good.config_json and substrate.release.revision == 1
    assert outcome.rollback.detail["config_restored"] is True
    assert outcome.rollback.detail["healthy_after"] is True
    assert outcome.error.endswith("rolled back to revision 1, which is healthy (its config restored too)")


def test_unknown_previous_config_keeps_the_current_one():
    inputs = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "bad", "worker": "good"}
    )
    substrate = FakeSubstrate(broken_image="bad", config_json=None)
    outcome = run_release(
        inputs, substrate, FakeProbe(substrate), VerifyConfig(retries=1, delay_s=0), lambda s: None
    )
    assert substrate.configs == [inputs.config_json, inputs.config_json]
    assert outcome.rollback.detail["config_restored"] is False


class FailingApplySubstrate(FakeSubstrate):
    """Like `helm upgrade --wait` timing out: the substrate itself says the release failed."""

    def apply(self, inputs, revision):
        super().apply(inputs, revision)
        if inputs.images["webhook"] == "slow":
            raise ReleaseFailed("helm upgrade --install shop failed: context deadline exceeded", {"x": 1})
        return {"revision": revision + 10}


def test_release_the_substrate_calls_failed_is_rolled_back_even_if_checks_pass():
    inputs = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "slow", "worker": "good"}
    )
    substrate = FailingApplySubstrate(broken_image="bad")
    outcome = run_release(
        inputs, substrate, FakeProbe(substrate), VerifyConfig(retries=1, delay_s=0), lambda s: None
    )
    assert not outcome.healthy
    assert outcome.deployed.detail["error"].endswith("context deadline exceeded")
    assert outcome.error.startswith("deploy failed (helm upgrade --install shop failed")
    assert substrate.applied[-1]["webhook"] == "good" and outcome.rollback.detail["healthy_after"]


def test_substrate_numbering_its_own_revisions_is_believed():
    inputs = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "good", "worker": "good"}
    )
    substrate = FailingApplySubstrate(broken_image="bad")
    outcome = run_release(
        inputs, substrate, FakeProbe(substrate), VerifyConfig(retries=1, delay_s=0), lambda s: None
    )
    assert outcome.healthy and outcome.deployed.revision == 12 and outcome.deployed.release == "shop-r12"
