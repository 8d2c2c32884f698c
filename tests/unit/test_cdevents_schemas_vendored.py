"""The CDEvents schemas Kiln validates against are exactly the v0.5.1 ones in ../shared/.

Kiln ships a copy (shared/cdevents/schemas) so an installed service can validate at run time;
this keeps the copy from drifting from the contract the project was given.
"""

from pathlib import Path

ROOT = Path(__file__).parents[2]
CONTRACT = ROOT.parent / "shared" / "cdevents-v0.5.1"
VENDORED = ROOT / "shared" / "cdevents" / "schemas"


def test_vendored_schemas_match_the_contract():
    assert CONTRACT.is_dir(), f"the CDEvents contract is missing at {CONTRACT}"
    contract = {p.relative_to(CONTRACT): p.read_bytes() for p in CONTRACT.rglob("*.json")}
    for relative, content in contract.items():
        vendored = VENDORED / relative
        if vendored.exists():
            assert vendored.read_bytes() == content, f"{relative} differs from the contract"
    used = {p.relative_to(VENDORED) for p in VENDORED.rglob("*.json")}
    assert used <= set(contract), f"schemas not in the contract: {sorted(map(str, used - set(contract)))}"
