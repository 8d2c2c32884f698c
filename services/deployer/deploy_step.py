"""The deploy stage of a build that passed the gate: scaffold inputs from config + the build's
images, release on the package's substrate, emit deploy/verify events, then (healthy, and the
package asks for it) the docs stage, and end the build."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.deployer.docs.stage import DocsStage
from services.deployer.gate import ImageState
from services.deployer.handlers import finish
from services.deployer.models import DeployerBuild
from services.deployer.ports import DocsFailed, HttpProbe, Substrate
from services.deployer.references import refused_images
from services.deployer.release import run_release
from services.deployer.scaffold import scaffold_inputs
from services.deployer.store import GateStore
from shared.bus import EventContext
from shared.config import ConfigError, KilnConfig, PackageConfig
from shared.events import StageFinished, StageStarted
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
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, ctx: EventContext, build: DeployerBuild, images: list[ImageState]) -> None:
        started = time.monotonic()
        ctx.emit(StageStarted(stage="deploy"))
        try:
            cfg = self.load_config()
            pkg = cfg.package(build.package)
        except (ConfigError, KeyError) as exc:
            return self._fail(ctx, "deploy", started, f"config: {exc}")
        deployed = [i for i in images if i.expected and i.platform == self.platform]
        refused = refused_images(deployed, build.package, pkg)
        if refused:
            return self._fail(ctx, "deploy", started, "refused to deploy: " + "; ".join(refused))
        refs = {i.target: i.reference for i in deployed}
        missing = sorted(set(pkg.enabled_services()) - set(refs))
        if missing:
            return self._fail(ctx, "deploy", started, f"no {self.platform} image for {', '.join(missing)}")
        inputs = scaffold_inputs(cfg, build.package, config_path=self.config_path, env=self.env, images=refs)
        substrate = self.substrate_for(pkg.deployment.substrate)
        outcome = run_release(inputs, substrate, self.probe, pkg.deployment.verify, self.sleep)
        deploy_ms = int((time.monotonic() - started) * 1000)
        ctx.emit(
            StageFinished(
                stage="deploy", status="succeeded", duration_ms=deploy_ms, detail=outcome.deployed.detail
            )
        )
        ctx.emit(outcome.deployed)
        if outcome.verified is not None:
            ctx.emit(
                StageFinished(
                    stage="verify",
                    status="succeeded" if outcome.healthy else "failed",
                    detail={
                        "pass_rate": outcome.verified.pass_rate,
                        "rolled_back": outcome.verified.rolled_back,
                    },
                    error=outcome.error,
                    log_tail=outcome.log_tail,
                )
            )
            ctx.emit(outcome.verified)
        if outcome.rollback is not None:
            ctx.emit(outcome.rollback)
        if outcome.healthy:
            docs_error = self._docs(ctx, build, pkg)
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

    def _docs(self, ctx: EventContext, build: DeployerBuild, pkg: PackageConfig) -> str | None:
        """Run the docs stage if the package asks for it; the error, if it failed."""
        if pkg.docs is None or not pkg.docs.enabled or self.docs is None:
            return None
        started = time.monotonic()
        ctx.emit(StageStarted(stage="docs"))
        source = Source.model_validate(build.source or {})
        try:
            detail = self.docs.run(build.package, pkg.docs, source)
        except DocsFailed as exc:
            error = f"docs: {exc}"
            ms = int((time.monotonic() - started) * 1000)
            detail = {"on_failure": pkg.docs.on_failure, "mkdocs": pkg.docs.mkdocs}
            if pkg.docs.wiki is not None:
                detail["wiki_url"] = pkg.docs.wiki.url
            ctx.emit(StageFinished(stage="docs", status="failed", duration_ms=ms, detail=detail, error=error))
            return error
        ms = int((time.monotonic() - started) * 1000)
        ctx.emit(StageFinished(stage="docs", status="succeeded", duration_ms=ms, detail=detail))
        return None

    def _fail(self, ctx: EventContext, stage: str, started: float, error: str) -> None:
        ms = int((time.monotonic() - started) * 1000)
        ctx.emit(StageFinished(stage=stage, status="failed", duration_ms=ms, error=error))
        finish(ctx, self.store, "failed", failed_stage=stage, error=error)
