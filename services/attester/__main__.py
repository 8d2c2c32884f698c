"""`python -m services.attester keys generate --dir DIR [--passphrase-file F]`: create the GPG and
ECDSA keys an operator needs, print the settings that name them (never a key's bytes).
`python -m services.attester kyverno-policy 'REGISTRY/PROJECT/*'`: the Kyverno verifyImages policy
for the cosign public key (KILN_ATTEST_COSIGN_PUBLIC_KEY), to apply in a cluster.
`python -m services.attester verify <image-ref>`: SBOM, signatures and provenance of an image;
exit status 1 if any is missing or invalid (`kiln verify`).
`python -m services.attester [worker]`: the attest stage (image.pushed, manifest.pushed)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from services.attester import keys, kyverno
from services.attester.bootstrap import bootstrap, make_signer
from services.attester.settings import AttesterSettings
from services.attester.verify import verify_image
from shared.bus.worker import run_worker
from shared.logging import setup_logging
from shared.naming import split_repository
from shared.registry import RegistryClient, RegistryError
from shared.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.attester")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("worker", help="consume image.pushed and manifest.pushed (the default)").set_defaults(
        run=run_worker_command
    )
    key_commands = commands.add_parser("keys", help="operator keys").add_subparsers(
        dest="action", required=True
    )
    generate = key_commands.add_parser("generate", help="create the signing keys when none exist")
    generate.add_argument("--dir", type=Path, required=True, help="where to write them")
    generate.add_argument(
        "--passphrase-file", type=Path, help="protect both private keys with this passphrase"
    )
    generate.set_defaults(run=run_generate)
    policy = commands.add_parser("kyverno-policy", help="the Kyverno verifyImages policy for these keys")
    policy.add_argument("image_pattern", help="images it applies to, e.g. registry.example.com/kiln/*")
    policy.set_defaults(run=run_kyverno_policy)
    verify = commands.add_parser("verify", help="SBOM, signatures and provenance of an image")
    verify.add_argument("image", help="repository:tag or repository@sha256:…")
    verify.set_defaults(run=run_verify)
    return parser


def run_generate(args: argparse.Namespace, settings: AttesterSettings) -> int:
    passphrase = args.passphrase_file.read_text().strip() if args.passphrase_file else None
    try:
        made = keys.generate(args.dir, passphrase=passphrase)
    except keys.KeyProblem as exc:
        print(f"keys generate: {exc}", file=sys.stderr)
        return 1
    print(f"keys written to {made.directory} (private keys mode 0600; keep them out of images and git)")
    print("set these for the attester (and the public keys for verifiers):")
    for line in made.settings_lines():
        print(f"  {line}")
    if passphrase:
        print("  KILN_ATTEST_GPG_PASSPHRASE / KILN_ATTEST_COSIGN_KEY_PASSWORD = the passphrase you gave")
    return 0


def split_reference(reference: str) -> tuple[str, str]:
    """`repo@sha256:…` -> (repo, digest); `repo:tag` -> (repo, tag); `repo` -> (repo, latest)."""
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    head, _, last = reference.rpartition("/")
    if ":" in last:
        name, _, tag = last.partition(":")
        return f"{head}/{name}" if head else name, tag
    return reference, "latest"


def run_verify(args: argparse.Namespace, settings: AttesterSettings) -> int:
    repository, ref = split_reference(args.image)
    _, repo = split_repository(repository)
    try:
        public_key = keys.load_public_key(settings.path(settings.attest_cosign_public_key))
        with RegistryClient.from_settings(settings) as registry:
            digest = ref if ref.startswith("sha256:") else registry.manifest_digest(repo, ref)
            report = verify_image(
                registry,
                repository,
                digest,
                signer=make_signer(settings),
                gpg_public_key=settings.path(settings.attest_gpg_public_key),
                cosign_public_key=public_key,
            )
    except (keys.KeyProblem, RegistryError) as exc:
        print(f"verify {args.image}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def run_kyverno_policy(args: argparse.Namespace, settings: AttesterSettings) -> int:
    try:
        public_pem = settings.path(settings.attest_cosign_public_key).read_text()
        print(kyverno.render(public_pem, args.image_pattern), end="")
    except (OSError, ValueError) as exc:
        print(f"kyverno-policy: {exc}", file=sys.stderr)
        return 2
    return 0


def run_worker_command(args: argparse.Namespace, settings: AttesterSettings) -> int:
    return run_worker(bootstrap(settings))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(AttesterSettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    logging.getLogger("httpx").setLevel("WARNING")  # one line per registry request is noise here
    return getattr(args, "run", run_worker_command)(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
