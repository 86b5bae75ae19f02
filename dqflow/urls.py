"""Backend URLs as they may be printed or logged: with every password hidden."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_QUERY_PASSWORD = re.compile(r"(^|&)(password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password (``user:pw@``, ``:pw@`` or ``?password=``) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ in the host: show only the scheme
        return url.split(":", 1)[0] + "://***" if ":" in url else "***"
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = _QUERY_PASSWORD.sub(r"\1\2***", parts.query)
    if netloc == parts.netloc and query == parts.query:  # nothing to hide: as given (urlunsplit
        return url  # would turn sqlite:////abs/q.db into sqlite://abs/q.db)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
