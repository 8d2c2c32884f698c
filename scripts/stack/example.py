"""An example package as a git repository, a signed Bitbucket Cloud push of it, and following
the build it starts through the gateway's API until it ends.

Two examples: `demo` (examples/monorepo, 4 services; the quick start) and `axion-like`
(examples/axion-like, 13 services on native-wheel tiers: `./kiln-dev up --package axion-like`).
Each has its own operator config, because an operator config's factories and tiers describe one
monorepo (docs/axion-like.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.stack.processes import ROOT

BRANCH = "main"


@dataclass(frozen=True)
class Example:
    package: str
    source: Path  # the monorepo pushed as the example repository
    operator_config: Path  # the services' KILN_CONFIG_PATH
    repository: str  # as in the package's webhooks.repository
    repo_dir: str  # its git repository, under the stack's state directory


EXAMPLES = {
    "demo": Example(
        "demo", ROOT / "examples" / "monorepo", ROOT / "examples" / "operator" / "config.yaml",
        "example/monorepo", "repo",
    ),
    "axion-like": Example(
        "axion-like", ROOT / "examples" / "axion-like", ROOT / "examples" / "operator" / "axion-like.yaml",
        "example/axion-like", "repo-axion-like",
    ),
}  # fmt: skip
DEMO = EXAMPLES["demo"]
EXAMPLE = DEMO.source
REPOSITORY = DEMO.repository


def git(repo: Path, *args: str) -> str:
    env_args = ["-c", "user.name=Kiln quick start", "-c", "user.email=quickstart@localhost"]
    result = subprocess.run(["git", *env_args, *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def prepare_repo(repo: Path, source: Path = EXAMPLE) -> str:
    """A git repository holding the example on `main`; commits whatever differs. Returns HEAD."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", "-b", BRANCH)
    for item in source.iterdir():
        if item.name in {"__pycache__", ".pytest_cache"}:
            continue
        target = repo / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, target)
    git(repo, "add", "-A")
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "-q", "-m", "example monorepo")
    return git(repo, "rev-parse", "HEAD")


def one_file_change(repo: Path, relative: str) -> str:
    path = repo / relative
    path.write_text(path.read_text() + f"\n# touched {uuid.uuid4().hex[:8]}\n")
    git(repo, "commit", "-q", "-am", f"touch {relative}")
    return git(repo, "rev-parse", "HEAD")


def push_payload(
    commit: str, previous: str | None, repository: str = REPOSITORY, branch: str = BRANCH
) -> dict:
    """A Bitbucket Cloud `repo:push` body, in the documented shape."""
    return {
        "actor": {"nickname": "quickstart", "display_name": "Kiln quick start"},
        "repository": {
            "full_name": repository,
            "name": repository.rsplit("/", 1)[-1],
            "links": {"html": {"href": f"https://bitbucket.org/{repository}"}},
        },
        "push": {
            "changes": [
                {
                    "new": {"type": "branch", "name": branch, "target": {"hash": commit, "type": "commit"}},
                    "old": {"type": "branch", "name": branch, "target": {"hash": previous or "0" * 40}},
                    "created": previous is None,
                    "closed": False,
                    "forced": False,
                }
            ]
        },
    }


def trigger(stack, touch: str | None = None) -> list[str]:
    """Deliver a signed push to the gateway exactly as Bitbucket Cloud would; the build ids started."""
    commit = one_file_change(stack.repo, touch) if touch else prepare_repo(stack.repo, stack.example.source)
    pushed = stack.state / "pushed-commits"
    if commit in (pushed.read_text().split() if pushed.is_file() else []):
        # The gateway rightly treats the same repo/ref/commit as a redelivery: a new run of the
        # quick start pushes a new (empty) commit instead.
        git(stack.repo, "commit", "-q", "--allow-empty", "-m", "quick start: build again")
        commit = git(stack.repo, "rev-parse", "HEAD")
    with pushed.open("a") as record:
        record.write(commit + "\n")
    previous = (
        git(stack.repo, "rev-parse", "HEAD~1")
        if git(stack.repo, "rev-list", "--count", "HEAD") != "1"
        else None
    )
    build_ids = deliver(stack, commit, previous, BRANCH)
    print(f"==> pushed {commit[:10]} to {BRANCH}: build {', '.join(build_ids)}", flush=True)
    return build_ids


def deliver(stack, commit: str, previous: str | None, branch: str) -> list[str]:
    """POST the signed push of `commit` on `branch` of the stack's example; the build ids started."""
    body = json.dumps(push_payload(commit, previous, stack.example.repository, branch)).encode()
    secret = stack.secrets()["webhook_secret"].encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    response = httpx.post(
        f"{stack.gateway_url}/webhook/bitbucket-cloud",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Event-Key": "repo:push",
            "X-Request-UUID": str(uuid.uuid4()),
            "X-Hub-Signature": signature,
        },
        timeout=15,
    )
    if response.status_code != 202:
        raise SystemExit(f"the gateway did not start a build: {response.status_code} {response.text}")
    return response.json()["build_ids"]


def follow(stack, build_id: str, timeout_s: float = 1800) -> str:
    """Print each stage as it changes until the build ends; returns its status."""
    seen: dict[tuple, str] = {}
    deadline = time.monotonic() + timeout_s
    token = stack.secrets()["api_token"]
    with httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}) as client:
        while time.monotonic() < deadline:
            response = client.get(f"/builds/{build_id}", timeout=10)
            if response.status_code == 200:
                build = response.json()
                for step in build.get("steps", []):
                    key = (step.get("stage"), step.get("target") or "", step.get("platform") or "")
                    if seen.get(key) != step.get("status"):
                        seen[key] = step.get("status")
                        where = " ".join(part for part in key[1:] if part)
                        took = f" {step['duration_ms'] / 1000:.1f}s" if step.get("duration_ms") else ""
                        print(f"    {key[0]:9} {where:28} {step.get('status')}{took}", flush=True)
                status = (build.get("build") or {}).get("status")
                if status in {"succeeded", "failed", "cancelled"}:
                    return status
            time.sleep(2)
    raise SystemExit(f"build {build_id} did not finish in {timeout_s:.0f}s; see {stack.state}/logs/")
