"""The CDEvents schemas Kiln validates against are exactly the v0.5.1 ones.

Kiln ships a copy (services/reporter/cdevents/schemas) so an installed service can validate at run time.
Two checks keep the copy honest:

- on the repository alone (a user's clone has nothing beside it): every vendored schema matches
  the checksum list committed beside it (SHA256SUMS, made from the v0.5.1 contract), and no
  schema is there that the list does not name;
- in the project's development tree, where the contract itself sits in ../shared: the list
  matches the contract file for file. Without that folder this one check says so and skips; the
  checksum check above still holds the copy to the contract.
"""

import hashlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CONTRACT = ROOT.parent / "shared" / "cdevents-v0.5.1"
VENDORED = ROOT / "services" / "reporter" / "cdevents" / "schemas"
CHECKSUMS = VENDORED / "SHA256SUMS"


def _pinned() -> dict[str, str]:
    pinned = {}
    for line in CHECKSUMS.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        pinned[name] = digest
    return pinned


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.json")
    }


def test_vendored_schemas_match_their_pinned_checksums():
    pinned, vendored = _pinned(), _digests(VENDORED)
    assert vendored, f"no schemas vendored in {VENDORED}"
    unpinned = sorted(set(vendored) - set(pinned))
    assert not unpinned, f"schemas not in {CHECKSUMS.name} (not part of the v0.5.1 contract): {unpinned}"
    changed = sorted(name for name, digest in vendored.items() if pinned[name] != digest)
    assert not changed, f"vendored schemas differ from the v0.5.1 contract's checksums: {changed}"


def test_pinned_checksums_are_the_contracts():
    if not CONTRACT.is_dir():
        pytest.skip(f"development check only: the contract folder {CONTRACT} is not beside this clone")
    assert _pinned() == _digests(CONTRACT), f"{CHECKSUMS} does not list the contract at {CONTRACT}"
