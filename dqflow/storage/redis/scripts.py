"""The Lua scripts: read once from ``lua/*.lua``, loaded with SCRIPT LOAD, run by EVALSHA.

Each script is ``_lib.lua`` (shared helpers) followed by its own file (but those of ``BARE``); a script of
``COMPOSED`` also gets, between the two, other scripts wrapped as local functions
(``claim_tick`` calls ``add_many(ARGV)`` to add its job in the same script). Its SHA1 is
computed locally, so a call needs no round trip to learn it; a ``NOSCRIPT`` reply
(server restarted, ``SCRIPT FLUSH``, a failover to a replica without the script)
loads the script again and repeats the call once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import redis

_LUA_DIR = Path(__file__).parent / "lua"
_LIB = (_LUA_DIR / "_lib.lua").read_text()

NAMES = (
    "add_many",
    "claim",
    "settle",
    "cancel",
    "retry",
    "edit",
    "reclaim",
    "progress",
    "output",
    "renew",
    "next_due",
    "list",
    "claim_tick",
    "set_paused",
    "prune",
    "add_unique",
    "prune_events",
    "prune_flow",
    "worker_beat",
    "worker_remove",
    "workflow",
    "read_runs",
    "step",
    "complete_token",
    "get_token",
    "wake",
    "layout_finished",
    "layout_raise",
)

COMPOSED = {"claim_tick": ("add_many",), "add_unique": ("add_many",)}
"""Scripts that call others: each named one is included as ``local function NAME(ARGV) ... end``."""

BARE = frozenset({"read_runs"})
"""Scripts without ``_lib.lua``: its helpers are defined again on every call (tens of
thousands of instructions), which a script that only reads does not need to pay."""


def _source(name: str) -> str:
    if name in BARE:
        return (_LUA_DIR / f"{name}.lua").read_text()
    parts = [_LIB]
    for inner in COMPOSED.get(name, ()):
        body = (_LUA_DIR / f"{inner}.lua").read_text()
        parts.append(f"local function {inner}(ARGV)\n{body}\nend")
    parts.append((_LUA_DIR / f"{name}.lua").read_text())
    return "\n".join(parts)


class Script:
    """One Lua script of the backend, called by SHA with the queue prefix as KEYS[1]."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def load(self, client: Any) -> None:
        """SCRIPT LOAD (on a cluster, redis-py sends it to every primary)."""
        sha = client.script_load(self.source)
        if isinstance(sha, bytes):
            sha = sha.decode()
        if sha != self.sha:  # pragma: no cover - would mean a different SHA1 than Redis's
            self.sha = sha

    def __call__(self, client: Any, prefix_key: str, *args: Any) -> Any:
        try:
            return client.evalsha(self.sha, 1, prefix_key, *args)
        except redis.exceptions.NoScriptError:
            self.load(client)
            return client.evalsha(self.sha, 1, prefix_key, *args)


def load_all() -> dict[str, Script]:
    """Every script of the backend by name."""
    return {name: Script(name) for name in NAMES}
