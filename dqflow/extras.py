"""Optional dependencies: the PostgreSQL and Redis drivers come with ``dqflow[postgres]`` / ``dqflow[redis]``."""

from __future__ import annotations

from dqflow.errors import ConfigError

EXTRAS = {
    "postgres": ("PostgreSQL", ("psycopg", "psycopg_pool")),
    "redis": ("Redis", ("redis",)),
    "codegen": ("Code generation (dqflow codegen)", ("datamodel_code_generator",)),
}


def missing_extra(extra: str, exc: ImportError) -> ConfigError | None:
    """A one-line ``ConfigError`` naming the extra to install when ``exc`` is about its driver,
    else None (an import error of some other kind, which the caller re-raises)."""
    what, modules = EXTRAS[extra]
    name = (exc.name or "").split(".")[0]
    if name in modules:
        key = None if extra == "codegen" else "backend"
        return ConfigError(f"{what} support is not installed: pip install 'dqflow[{extra}]'", key=key)
    if extra == "postgres" and "libpq" in str(exc):  # psycopg without a binary or a system libpq
        return ConfigError(
            f"PostgreSQL support needs libpq: install it (e.g. apt install libpq5) or pip install 'psycopg[binary]'"
            f" ({' '.join(str(exc).split())})",
            key="backend",
        )
    return None
