"""The HTTP API and dashboard: ``create_app(queue)``, served by ``dqflow serve``.

Needs the ``http`` extra: ``pip install 'dqflow[http]'``.
"""

from dqflow.http.app import create_app
from dqflow.http.auth import Access, TokenAuth

__all__ = ["Access", "TokenAuth", "create_app"]
