"""Contacts from CSV and XML files; every row is validated, the bad ones are reported by number."""

from __future__ import annotations

import csv
import io

from lxml import etree

from models.schema import Invalid, contact


def from_csv(text: str) -> tuple[list[dict], list[str]]:
    good, bad = [], []
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            good.append(
                contact(
                    {"name": row.get("name"), "phone": row.get("phone"), "email": row.get("email") or None}
                )
            )
        except Invalid as exc:
            bad.append(f"line {number}: {exc}")
    return good, bad


def from_xml(data: bytes) -> tuple[list[dict], list[str]]:
    # No entities, no network: an uploaded file must not read local files or call out (XXE).
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(data, parser)
    good, bad = [], []
    for index, node in enumerate(root.iter("contact"), start=1):
        try:
            good.append(
                contact(
                    {
                        "name": node.findtext("name"),
                        "phone": node.findtext("phone"),
                        "email": node.findtext("email"),
                    }
                )
            )
        except Invalid as exc:
            bad.append(f"contact {index}: {exc}")
    return good, bad
