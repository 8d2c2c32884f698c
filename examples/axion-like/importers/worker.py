"""Service `import` (tier io, port 9104 for health only): imports every *.csv and *.xml dropped
into $IMPORT_INBOX (volume shared_blobs when deployed) and moves it to done/.
Run: python3 -m importers.worker"""

from __future__ import annotations

from pathlib import Path

from core.checks import Check
from core.config import writable_dir
from core.lifecycle import log
from httpapi.service import run_service
from importers.contacts import from_csv, from_xml
from storage.records import RecordStore

SERVICE = "import"
PORT = 9104
CSV = "name,phone,email\nAda,+441234567,ada@example.com\nNobody,12,\n"
XML = b"<contacts><contact><name>Grace</name><phone>+15551234</phone></contact></contacts>"


def import_inbox(inbox: Path, store: RecordStore) -> int:
    done = inbox / "done"
    done.mkdir(exist_ok=True)
    imported = 0
    for path in sorted(p for p in inbox.iterdir() if p.suffix in (".csv", ".xml")):
        good, bad = (
            from_csv(path.read_text(encoding="utf-8"))
            if path.suffix == ".csv"
            else from_xml(path.read_bytes())
        )
        for row in good:
            store.put("contact", row["phone"], row)
        imported += len(good)
        log(SERVICE, f"{path.name}: {len(good)} imported, {len(bad)} refused{': ' + bad[0] if bad else ''}")
        path.replace(done / path.name)
    return imported


def self_checks() -> list[Check]:
    return [
        Check("importers csv", lambda: [len(part) for part in from_csv(CSV)], [1, 1]),
        Check("importers xml (lxml)", lambda: from_xml(XML)[0][0]["name"], "Grace"),
        Check(
            "importers xml refuses entities",
            lambda: (
                "root:"
                in str(
                    from_xml(
                        b'<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><contacts><contact><name>&x;</name>'
                        b"<phone>+15551234</phone></contact></contacts>"
                    )
                )
            ),
            False,
        ),
    ]


def main() -> int:
    inbox = writable_dir("IMPORT_INBOX", "import-inbox")
    store = RecordStore(inbox / "contacts.sqlite")
    return run_service(
        SERVICE, default_port=PORT, checks=self_checks, tick=lambda: import_inbox(inbox, store)
    )


if __name__ == "__main__":
    raise SystemExit(main())
