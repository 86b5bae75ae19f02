"""Several processes (here: storages on their own connections) opening one fresh SQLite
file at the same moment all get a usable queue: none fails with ``database is locked``."""

from __future__ import annotations

import threading
from pathlib import Path

from dqflow.storage import Storage, open_storage


def _set_up_at_once(url: str, count: int) -> list[BaseException]:
    """``count`` storages of ``url`` set up at the same moment; the errors they raised."""
    stores = [open_storage(url) for _ in range(count)]
    errors: list[BaseException] = []
    start = threading.Barrier(count, timeout=30)

    def set_up(store: Storage) -> None:
        start.wait()
        try:
            store.setup()
        except BaseException as exc:  # collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=set_up, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    return errors


def test_storages_opening_one_fresh_file_at_once_all_set_up(tmp_path: Path) -> None:
    for round_number in range(30):
        errors = _set_up_at_once(f"sqlite:///{tmp_path}/queue-{round_number}.db", 4)
        assert errors == [], f"round {round_number}: {errors}"
