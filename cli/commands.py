"""The `kiln` commands that talk to the gateway. Each returns the process exit code."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.client import GatewayClient
from cli.progress import EXIT_CODES, LogFollower, describe
from shared.platforms import branch_of
from shared.stages import BUILD_FINISHED


def pipeline(client: GatewayClient, args: argparse.Namespace) -> int:
    body = {
        "package": args.package,
        "skip_compile": args.skip_compile,
        "skip_push": args.skip_push,
        "skip_deploy": args.skip_deploy,
        "notify": args.notify,
        "platform": args.platform,
        "ref": args.ref,
        # No repository URL: the gateway builds the package's configured source.
        "commit": args.commit,
    }
    reply = client.post("/builds", {k: v for k, v in body.items() if v is not None})
    build_id = reply["build_ids"][0]
    print(f"started build {build_id} of {args.package}", flush=True)
    if args.no_follow:
        return 0
    return follow(client, build_id)


def follow(client: GatewayClient, build_id: str, attempt: int = 1) -> int:
    """Print the build's progress until its build.finished (of `attempt` or later: a replay's)."""
    status = None
    stream = client.stream(f"/builds/{build_id}/events/stream", logs="false", attempt=str(attempt))
    for key, event in stream:
        line = describe(key, event)
        if line:
            print(line, flush=True)
        if key == BUILD_FINISHED:
            status = event.get("data", {}).get("status")
    if status is None:
        print(
            "the event stream ended before the build finished; see: kiln status " + build_id, file=sys.stderr
        )
        return 4
    return EXIT_CODES.get(status, 1)


def builds(client: GatewayClient, args: argparse.Namespace) -> int:
    reply = client.get(
        "/builds", package=args.package, status=args.status, branch=args.branch, limit=args.limit
    )
    print(f"{'BUILD':36}  {'PACKAGE':14} {'#':>5}  {'STATUS':10} {'REF':24} REQUESTED")
    for b in reply["builds"]:
        ref = branch_of(b.get("ref") or "")
        print(
            f"{b['build_id']:36}  {b['package']:14} {b.get('build_number') or '':>5}  "
            f"{b['status']:10} {ref:24} {b.get('requested_at') or ''}"
        )
    print(f"{len(reply['builds'])} of {reply['total']}")
    return 0


def status(client: GatewayClient, args: argparse.Namespace) -> int:
    detail = client.get(f"/builds/{args.build}")
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    b = detail["build"]
    print(f"build {b['build_id']}  {b['package']} #{b.get('build_number')}  {b['status']}")
    print(f"  ref {b.get('ref')}  commit {b.get('commit_sha')}  version {b.get('version')}")
    rolled_to = (b.get("options") or {}).get("rollback_to")
    if rolled_to:
        print(f"  rollback to #{rolled_to} ({b['options'].get('rollback_to_build')})")
    if b.get("waiting_on"):  # held by its concurrency group (docs/gateway.md)
        print(f"  {b['waiting_on']}")
    for step in detail["steps"]:
        where = " ".join(x for x in (step["target"], step["platform"]) if x)
        print(
            f"  {step['stage']:10} {step['status']:10} {(step.get('duration_ms') or 0) / 1000:7.1f}s  {where}"
        )
    for image in detail["images"]:
        print(f"  image {image['target']} {image['platform']} {_image_size(image)}")
    attempts = detail.get("attempts") or []
    if len(attempts) > 1:
        print("  attempts (latest first; the steps above are each step's latest):")
        for a in attempts:
            took = f"{a['duration_ms'] / 1000:.1f}s" if a.get("duration_ms") is not None else "-"
            error = f"  {a['error']}" if a.get("error") else ""
            start = a["from_stage"] or "-"
            print(f"    #{a['attempt']:<3} {a['status']:10} from {start:10} {took:>8}{error}")
    return EXIT_CODES.get(b["status"], 0) if b["status"] in EXIT_CODES else 0


def _image_size(image: dict[str, Any]) -> str:
    """A multi-arch index is a few hundred bytes itself: show the sum of its platform images, as
    the dashboard does (the API's `platforms_size_bytes`)."""
    if image.get("platforms_size_bytes") is not None and not image.get("size_bytes"):
        return f"{image['platforms_size_bytes'] / 1e6:.1f} MB (sum of its platform images)"
    return f"{(image.get('size_bytes') or 0) / 1e6:.1f} MB"


def logs(client: GatewayClient, args: argparse.Namespace) -> int:
    if not args.follow:
        sys.stdout.write(client.get_text(f"/builds/{args.build}/logs"))
        return 0
    follower = LogFollower()
    for key, event in client.stream(f"/builds/{args.build}/events/stream"):
        for line in follower.lines(key, event):
            print(line, flush=True)
    return 0


def replay(client: GatewayClient, args: argparse.Namespace) -> int:
    """Rerun the build from a stage under a new attempt and follow it: the exit code is that
    attempt's result, as for `kiln pipeline`."""
    only = getattr(args, "only_stage", None)
    stage = only or args.from_stage
    reply = client.post(f"/builds/{args.build}/replay", **{"from": stage, "only": "true" if only else None})
    attempt = max(event["attempt"] for event in reply["replayed"])
    for event in reply["replayed"]:
        print(f"republished {event['type']} as {event['id']} (replay of {event['replayof']})")
    reruns = f"only {only}" if only else f"from {stage or 'the start'}"
    print(f"attempt {attempt} of build {args.build} reruns {reruns}", flush=True)
    if args.no_follow:
        return 0
    return follow(client, args.build, attempt)


def cancel(client: GatewayClient, args: argparse.Namespace) -> int:
    """Ask every stage of the build's running attempt to stop at its next boundary. A finished
    attempt stays as it ended; a later replay of the build runs (it is a newer attempt)."""
    reply = client.post(f"/builds/{args.build}/cancel", reason=args.reason)
    print(f"cancel of build {args.build} requested ({reply['event_id']}): stages stop at their next boundary")
    return 0


def rollback(client: GatewayClient, args: argparse.Namespace) -> int:
    """Redeploy build `--to` of the package as a run of its own, and follow it: the exit code is
    that run's result, as for `kiln pipeline`."""
    reply = client.post(f"/packages/{args.package}/rollback", {"to": args.to})
    target = reply["rollback_to"]
    print(
        f"rollback of {args.package} to build #{target['build_number']} ({target['build_id']}) "
        f"started as build {reply['build_id']} (#{reply['build_number']})",
        flush=True,
    )
    if args.no_follow:
        return 0
    return follow(client, reply["build_id"])


def diff(client: GatewayClient, args: argparse.Namespace) -> int:
    result = client.get("/builds/diff", a=args.a, b=args.b)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"status: {_change(result['status'])}   duration: {_change(result['duration_ms'])} ms")
    for section in ("stages", "images"):
        for row in result[section]:
            changes = _row_changes(row)
            if changes:
                print(f"{section[:-1]} {_ident(row)}: {changes}")
    for kind in ("newly_failing", "fixed", "changed"):
        for module in result.get("modules", {}).get(kind, []):
            print(f"module {module['module']} ({module['platform']}): {kind.replace('_', ' ')}")
    for kind in ("new", "fixed"):
        for finding in result.get("vulnerabilities", {}).get(kind, []):
            print(f"vulnerability {kind}: {finding['id']} {finding.get('severity')} in {finding['target']}")
    for name, change in result.get("config", {}).items():
        print(f"config {name}: {_change(change)}")
    return 0


def events(client: GatewayClient, args: argparse.Namespace) -> int:
    if args.follow:
        for key, event in client.stream("/events/stream", filter=args.filter):
            print(
                f"{event.get('time', '')} {key:28} {event.get('buildid', '')} "
                f"{json.dumps(event.get('data'))[:200]}",
                flush=True,
            )
        return 0
    if not args.build:
        print(
            "kiln events: give --build ID for a build's stored events, or --follow for live ones",
            file=sys.stderr,
        )
        return 2
    for event in client.get(f"/builds/{args.build}/events"):
        if _matches(args.filter, event["routing_key"]):
            print(f"{event['time']} {event['routing_key']:28} {json.dumps(event['data'])[:200]}")
    return 0


def _matches(pattern: str, key: str) -> bool:
    words, parts = key.split("."), pattern.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(words)
        if parts[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(words) + 1))
        return j < len(words) and parts[i] in ("*", words[j]) and match(i + 1, j + 1)

    return match(0, 0)


def _change(pair: dict[str, Any]) -> str:
    return f"{pair['a']} → {pair['b']}" + (f" ({pair['delta']:+})" if "delta" in pair else "")


def _ident(row: dict[str, Any]) -> str:
    return "/".join(str(row[k]) for k in ("stage", "target", "platform") if row.get(k))


def _row_changes(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {_change(v)}" for name, v in row.items() if isinstance(v, dict) and v.get("changed")
    )
