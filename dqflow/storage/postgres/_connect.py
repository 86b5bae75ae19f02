"""Connection settings: a dqflow PostgreSQL URL, turned into libpq parameters.

``postgresql://user:pw@host:5432/db?schema=NAME&sslmode=...`` (``postgres://``
too): ``schema`` is dqflow's own parameter and puts every dqflow table in that
schema; everything else goes to libpq unchanged. Connections dqflow opens run
with ``TimeZone=UTC`` and, with a schema, ``search_path`` set to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dqflow.errors import ConfigError, StorageError
from dqflow.urls import redact_url

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCHEMES = ("postgresql", "postgres")


def check_schema(schema: str | None) -> str | None:
    """Return ``schema`` if it is a plain lower-case identifier; ``ConfigError`` otherwise."""
    if schema is None or schema == "":
        return None
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError(
            f"invalid PostgreSQL schema name {schema!r}: use lower-case letters, digits and _"
            " (at most 63, not starting with a digit)",
            key="backend",
        )
    return schema


@dataclass(frozen=True, slots=True)
class Settings:
    """Where and how to connect: libpq parameters, the dqflow schema and a printable URL."""

    params: dict[str, Any]
    schema: str | None
    display: str

    def conninfo(self, *, hot_path: bool = False) -> str:
        """The libpq connection string, with dqflow's session settings in ``options``
        (and the planner settings of the hot path, for the backend's pool)."""
        if not hot_path:
            return make_conninfo(**self.params)
        options = f"{self.params.get('options', '')} {HOT_PATH_OPTIONS}".strip()
        return make_conninfo(**{**self.params, "options": options})

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """Open one connection (``StorageError`` naming the server and the cause if it fails)."""
        try:
            return psycopg.connect(self.conninfo(), autocommit=autocommit)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL at {self.display}: {connect_error(exc)}") from exc

    def probe(self) -> None:
        """Open and close one connection, so that a wrong database, user, port or
        setting fails at once with its cause (a pool only retries and times out)."""
        self.connect().close()


def connect_error(exc: BaseException) -> str:
    """libpq's reason on one line, without its generic prefixes."""
    text = " ".join(str(exc).split())
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    return text.replace("FATAL: ", "") or type(exc).__name__


def parse_url(url: str, *, schema: str | None = None, connect_timeout: float = 5.0) -> Settings:
    """Split a dqflow PostgreSQL URL into libpq parameters and the schema.

    An explicit ``schema`` argument wins over ``?schema=`` in the URL.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigError(f"not a PostgreSQL URL: {redact_url(url)!r} (use postgresql://...)", key="backend")
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_schema = next((value for key, value in query if key == "schema"), None)
    rest = [(key, value) for key, value in query if key != "schema"]
    libpq_url = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment))
    try:
        params: dict[str, Any] = conninfo_to_dict(libpq_url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid PostgreSQL URL {redact_url(url)!r}: {exc}", key="backend") from exc
    chosen = check_schema(schema if schema is not None else url_schema)
    params.setdefault("connect_timeout", max(1, round(connect_timeout)))
    params.setdefault("application_name", "dqflow")
    params["options"] = session_options(params.get("options"), chosen)
    return Settings(params=params, schema=chosen, display=redact_url(url))


def settings_from_connection(conn: psycopg.Connection[Any], schema: str | None) -> Settings:
    """Settings to open more connections like ``conn`` (for the LISTEN connection)."""
    params: dict[str, Any] = dict(conn.info.get_parameters())
    if conn.info.password:
        params["password"] = conn.info.password
    params["options"] = session_options(params.get("options"), schema)
    host = params.get("host", "localhost")
    display = f"postgresql://{params.get('user', '')}@{host}:{params.get('port', 5432)}/{params.get('dbname', '')}"
    return Settings(params=params, schema=schema, display=display)


# Settings of the backend's own pool. Queue tables churn, so their statistics are
# often stale (a fresh table, a bulk load a minute ago) and the planner then
# prefers a bitmap scan plus sort over the ordered partial index, or a hash join
# over a whole index: 5-50x slower claims and completions. Every hot statement is
# written for one index path (no joins that need hashing), so the pool plans with
# index scans and nested loops only; ``list_jobs`` restores the defaults for its
# own transaction (GIN needs bitmap scans). JIT only adds compile time here.
HOT_PATH_OPTIONS = (
    "-c jit=off -c enable_seqscan=off -c enable_bitmapscan=off -c enable_hashjoin=off -c enable_mergejoin=off"
)


def session_options(existing: str | None, schema: str | None) -> str:
    """libpq ``options``: the caller's, plus UTC timestamps and the dqflow schema first on the path."""
    parts = [existing] if existing else []
    parts.append("-c TimeZone=UTC")
    if schema:
        parts.append(f"-c search_path={schema},public")
    return " ".join(parts)
