"""Service `storage-worker`: writes a heartbeat blob every few seconds until SIGTERM.
Run: python3 -m storage.worker  (directory: $STORAGE_DIR, default /tmp/kiln-storage)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.runtime import StopFlag, load_service_config, log
from storage.store import BlobStore

SERVICE = "storage-worker"


def main() -> int:
    stop = StopFlag()
    config = load_service_config()
    store = BlobStore(Path(os.environ.get("STORAGE_DIR", "/tmp/kiln-storage")))
    log(SERVICE, f"started for package {config.get('package', '?')} in {store.root}")
    while True:
        digest = store.put(f"heartbeat {int(time.time())}".encode())
        store.get(digest)
        if stop.wait(5.0):
            break
    log(SERVICE, "stopping on signal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
