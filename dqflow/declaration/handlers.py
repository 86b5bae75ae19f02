"""Import handlers named ``module:function`` (or ``module:Class.method``)."""

from __future__ import annotations

import importlib
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["HANDLER_REF", "HandlerImportError", "add_import_root", "handler_ref_of", "import_handler"]

HANDLER_REF = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")

_path_lock = threading.Lock()


class HandlerImportError(Exception):
    """A handler reference could not be turned into a callable; the message says why."""


def add_import_root(folder: Path) -> None:
    """Put ``folder`` at the front of ``sys.path`` unless it is already there."""
    entry = str(folder.resolve())
    with _path_lock:
        if entry not in sys.path:
            sys.path.insert(0, entry)
            importlib.invalidate_caches()


def import_handler(ref: str) -> Callable[..., Any]:
    """Import ``module:attr[.attr...]`` and return it; it must be callable.

    Raises :class:`HandlerImportError` with the import error's own text when the
    module is missing or fails to import, when the attribute is missing, or when
    the object is not callable.
    """
    if not HANDLER_REF.match(ref):
        raise HandlerImportError(f"handler {ref!r} is not of the form module:function")
    module_name, _, attr_path = ref.partition(":")
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerImportError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise HandlerImportError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    walked = module_name
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise HandlerImportError(f"{walked!r} has no attribute {part!r}") from exc
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    if not callable(obj):
        raise HandlerImportError(f"{ref!r} is not callable (it is a {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def handler_ref_of(func: Callable[..., Any]) -> str:
    """``module:qualname`` of a callable given in code (best effort, for display)."""
    module = getattr(func, "__module__", None) or "?"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__
    return f"{module}:{name}"
