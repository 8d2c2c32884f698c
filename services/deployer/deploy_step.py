"""The deploy stage of a build that passed the gate: scaffold inputs from config + the build's
images, release on the package's substrate, emit deploy/verify events, then (healthy, and the
package asks for it) the docs stage, and end the build. Each release is recorded (release_log.py).

A rollback run (rollback.py) comes through here too, with the earlier build's recorded images and
config: the same receipt, signature, deploy and verify path, plus a check that its images are
still in the registry; no docs stage (the wiki is not part of the release)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.deployer.app_config import (
    AppConfigRefused,
    FetchDocument,
    app_secret_values,
    build_app_config,
    checked_document,
)
from services.deployer.docs.stage import DocsStage
from services.deployer.gate import ImageState
from services.deployer.handlers import finish
from services.deployer.models import DeployerBuild
from services.deployer.ports import DocsFailed, HttpProbe, Substrate
from services.deployer.references import refused_images
from services.deployer.release import ReleaseOutcome, run_release
from services.deployer.release_log import ReleaseLog
from services.deployer.rollback import MissingImages, Rollback
from services.deployer.scaffold import scaffold_inputs
from services.deployer.store import GateStore
from shared.bus import EventContext
from shared.bus.stage import StageRun, finish_stage, stage
from shared.config import ConfigError, KilnConfig, PackageConfig
from shared.events.build import Source


@dataclass
class DeployStep:
    store: GateStore
    load_config: Callable[[], KilnConfig]
    config_path: Path
    substrate_for: Callable[[str], Substrate]
    probe: HttpProbe
    platform: str
    env: Mapping[str, str]
    docs: DocsStage | None = None
    # (references) -> the problems of those not signed by the configured key; None: no key.
    check_signatures: Callable[[list[str]], list[str]] | None = None
    releases: ReleaseLog | None = None
    # A rollback's images must still be in the registry (references -> those gone); a build's own
    # were just pushed. The worker always has it (bootstrap); None only in unit tests without one.
    missing_images: MissingImages | None = None
    # (reference, package) -> a build's trimmed app config, digest-checked (app_config.py).
    fetch_document: FetchDocument | None = None
    sleep: Callable[[float], None] = time.sleep

    def __call__(
        self,
        ctx: EventContext,
        build: DeployerBuild,
        images: list[ImageState],
        rollback: Rollback | None = None,
    ) -> None:
        with stage(ctx, "deploy") as run:
            released = self._release(run, build, images, rollback)
        if released is None:
            finish(ctx, self.store, "failed", failed_stage="deploy", error=run.error)
            return None
        outcome, pkg = released
        ctx.emit(outcome.deployed)
        if outcome.verified is not None:
            # Verify ran inside the release: its verdict is reported here, it has no start of its own.
            finish_stage(
                ctx,
                "verify",
                "succeeded" if outcome.healthy else "failed",
                detail={"pass_rate": outcome.verified.pass_rate, "rolled_back": outcome.verified.rolled_back},
                error=outcome.error,
                log_tail=outcome.log_tail,
            )
            ctx.emit(outcome.verified)
        if outcome.rollback is not None:
            ctx.emit(outcome.rollback)
        if outcome.healthy:
            docs_error = None if rollback is not None else self._docs(ctx, build, pkg)
            if docs_error and pkg.docs and pkg.docs.on_failure == "fail":
                finish(ctx, self.store, "failed", failed_stage="docs", error=docs_error)
            else:
                finish(ctx, self.store, "succeeded")
        else:
            finish(
                ctx,
                self.store,
                "failed",
                failed_stage="verify",
                error=outcome.error,
                log_tail=outcome.log_tail,
            )
        return None

    def _release(
        self, run: StageRun, build: DeployerBuild, images: list[ImageState], rollback: Rollback | None
    ) -> tuple[ReleaseOutcome, PackageConfig] | None:
        """Stage deploy's body: the release's outcome, or None with the stage failed."""
        if rollback is not None:
            run.detail.update(rollback_to=rollback.to_number, rollback_to_build=rollback.to_build_id)
            if rollback.problem:
                run.fail(f"cannot roll back to build #{rollback.to_number}: {rollback.problem}")
                return None
        try:
            cfg = self.load_config()
            pkg = cfg.package(build.package)
        except (ConfigError, KeyError) as exc:
            run.fail(f"config: {exc}")
            return None
        deployed = [i for i in images if i.expected and i.platform == self.platform]
        refused = refused_images(deployed, build.package, pkg)
        if refused:
            run.fail("refused to deploy: " + "; ".join(refused))
            return None
        refs = {i.target: i.reference for i in deployed}
        if rollback is not None and self.missing_images is not None:
            pruned = self.missing_images(sorted(refs.values()))
            if pruned:
                run.fail(f"build {rollback.to_number}'s images were pruned: {'; '.join(pruned)}")
                return None
        unsigned = self._unsigned(pkg, sorted(refs.values()))
        if unsigned:
            run.fail("refused to deploy: " + "; ".join(unsigned))
            return None
        missing = sorted(set(pkg.enabled_services()) - set(refs))
        if missing:
            run.fail(f"no {self.platform} image for {', '.join(missing)}")
            return None
        try:
            document = self._app_document(build, pkg, rollback)
            secrets = app_secret_values(build.package, pkg, self.env)
        except AppConfigRefused as exc:
            run.fail(str(exc))
            return None
        inputs = scaffold_inputs(
            cfg,
            build.package,
            config_path=self.config_path,
            env=self.env,
            images=refs,
            app_document=document,
            secret_values=secrets,
        )
        if rollback is not None and rollback.release is not None:
            # The config that build's containers ran with, not today's (the topology is today's).
            inputs = dataclasses.replace(inputs, config_json=rollback.release.config_json)
        substrate = self.substrate_for(pkg.deployment.substrate)
        outcome = run_release(inputs, substrate, self.probe, pkg.deployment.verify, self.sleep)
        if self.releases is not None:
            self.releases.record(
                build.build_id,
                build.package,
                self.platform,
                refs,
                inputs.config_json,
                outcome.healthy,
                inputs.app_document,
            )
        run.detail.update(outcome.deployed.detail)
        return outcome, pkg

    def _app_document(
        self, build: DeployerBuild, pkg: PackageConfig, rollback: Rollback | None
    ) -> str | None:
        """The trimmed app config to mount: the build's (fetched by its reference), or for a
        rollback the one that build's release mounted."""
        if rollback is None or rollback.release is None or pkg.app_config is None:
            return build_app_config(build.package, pkg, build.app_config, self.fetch_document)
        recorded = rollback.release.app_config_json
        if recorded is None:
            raise AppConfigRefused(
                f"packages.{build.package}.app_config is set, but build #{rollback.to_number} was "
                "deployed without an app config: roll back to a later build, or rebuild"
            )
        return checked_document(build.package, pkg, recorded)

    def _unsigned(self, pkg: PackageConfig, references: list[str]) -> list[str]:
        """With deployment.require_signature, what is not signed by the attester's key."""
        if not pkg.deployment.require_signature:
            return []
        if self.check_signatures is None:
            return [
                "deployment.require_signature is on but this deployer has no key to check with: "
                "set KILN_ATTEST_GPG_PUBLIC_KEY (the attester's public key, docs/attest.md) or turn "
                "require_signature off for this package"
            ]
        return self.check_signatures(references)

    def _docs(self, ctx: EventContext, build: DeployerBuild, pkg: PackageConfig) -> str | None:
        """Run the docs stage if the package asks for it; the error, if it failed."""
        if pkg.docs is None or not pkg.docs.enabled or self.docs is None:
            return None
        with stage(ctx, "docs") as run:
            source = Source.model_validate(build.source or {})
            try:
                run.detail.update(self.docs.run(build.package, pkg.docs, source))
            except DocsFailed as exc:
                detail = {"on_failure": pkg.docs.on_failure, "mkdocs": pkg.docs.mkdocs}
                if pkg.docs.wiki is not None:
                    detail["wiki_url"] = pkg.docs.wiki.url
                run.fail(f"docs: {exc}", detail=detail)
        return run.error
