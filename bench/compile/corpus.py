"""Generate a benchmark corpus in the seed monorepo's shape: 19 factory sets, ~838 modules.

Modules are ordinary application code (dataclasses, classes with properties, helpers, imports of
sibling modules), sizes varying like a real code base. Deterministic for a given seed.
`--small` gives 3 sets / 42 modules for quick runs.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

FULL = {"sets": 19, "modules": 838}
SMALL = {"sets": 3, "modules": 42}

_HEADER = '''"""{module}: generated benchmark module."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
{imports}

'''

_RECORD = """
@dataclass
class Record{n}:
    name: str
    amount: float = 0.0
    tags: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{{self.name}}:{{self.amount:.2f}}"

    def to_json(self) -> str:
        return json.dumps({{"name": self.name, "amount": self.amount, "tags": self.tags}})

    @classmethod
    def parse(cls, text: str) -> "Record{n}":
        data = json.loads(text)
        return cls(data["name"], float(data.get("amount", 0)), list(data.get("tags", [])))
"""

_SERVICE = '''
class Service{n}:
    """Aggregates records and applies rules."""

    def __init__(self, limit: int = {limit}) -> None:
        self.limit = limit
        self._items: dict[str, Any] = {{}}

    def add(self, key: str, value: Any) -> None:
        if len(self._items) >= self.limit:
            raise OverflowError(key)
        self._items[key] = value

    def total(self) -> float:
        return sum(float(v) for v in self._items.values() if isinstance(v, (int, float)))

    def select(self, predicate) -> list[str]:
        return sorted(k for k, v in self._items.items() if predicate(v))

    def __repr__(self) -> str:
        return f"Service{n}(limit={{self.limit}}, items={{len(self._items)}})"
'''

_FUNCTION = """
def compute_{n}(values: list[float], factor: float = {factor}) -> dict[str, float]:
    cleaned = [v * factor for v in values if v is not None]
    if not cleaned:
        return {{"count": 0, "mean": 0.0, "peak": 0.0}}
    mean = sum(cleaned) / len(cleaned)
    spread = max(cleaned) - min(cleaned)
    try:
        ratio = spread / mean
    except ZeroDivisionError:
        ratio = 0.0
    return {{"count": float(len(cleaned)), "mean": mean, "peak": max(cleaned), "ratio": ratio}}
"""


def generate(dest: Path, *, sets: int, modules: int, seed: int = 838) -> list[Path]:
    """Write the corpus under `dest` (replacing it); return the module paths."""
    rng = random.Random(seed)
    shutil.rmtree(dest, ignore_errors=True)
    written: list[Path] = []
    per_set = [modules // sets + (1 if i < modules % sets else 0) for i in range(sets)]
    for set_index, count in enumerate(per_set):
        factory = dest / f"factory_{set_index:02d}"
        subpackages = ["", "models", "services", "api"][: max(1, min(4, count // 8))]
        for sub in subpackages:
            package = factory / sub if sub else factory
            package.mkdir(parents=True, exist_ok=True)
            (package / "__init__.py").write_text(f'"""{package.name} package."""\n')
            written.append(package / "__init__.py")
        (factory / "defaults.yaml").write_text(f"factory: {factory.name}\n")
        siblings: list[str] = []
        for module_index in range(count - len(subpackages)):
            sub = subpackages[module_index % len(subpackages)]
            dotted = ".".join(filter(None, [factory.name, sub, f"mod_{module_index:03d}"]))
            imports = "\n".join(
                f"from {s} import compute_0 as helper_{i}" for i, s in enumerate(siblings[-2:])
            )
            body = [_HEADER.format(module=dotted, imports=imports)]
            for n in range(rng.randint(1, 3)):
                body.append(
                    rng.choice([_RECORD, _SERVICE, _FUNCTION]).format(
                        n=n, limit=rng.randint(10, 999), factor=round(rng.uniform(0.5, 2.0), 3)
                    )
                )
            if not any("def compute_0" in part for part in body):
                body.append(_FUNCTION.format(n=0, factor=1.0))
            path = dest.joinpath(*dotted.split(".")).with_suffix(".py")
            path.write_text("".join(body))
            written.append(path)
            siblings.append(dotted)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    shape = SMALL if args.small else FULL
    paths = generate(args.dest, **shape)
    print(f"{len(paths)} modules in {shape['sets']} factory sets under {args.dest}")


if __name__ == "__main__":
    main()
