"""Redis backend: a hash per job, sorted-set indexes, one Lua script per state change."""

from __future__ import annotations

from dqflow.storage.redis.backend import RedisStorage

__all__ = ["RedisStorage"]
