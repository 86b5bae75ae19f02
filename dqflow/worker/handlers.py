"""How a handler wants to be called: async or not, with ``ctx`` or not, typed payload or not."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """What the worker learned about a handler once, when it first ran."""

    func: Callable[..., Any]
    is_async: bool
    takes_ctx: bool
    payload_model: type[BaseModel] | None


def inspect_handler(func: Callable[..., Any]) -> HandlerInfo:
    """Look at ``func``'s signature: ``(payload, ctx)`` or ``(payload)``, sync or ``async def``.

    A payload parameter annotated with a pydantic model gets a validated instance.
    """
    target = inspect.unwrap(func)
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004
    )
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_ctx = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    model: type[BaseModel] | None = None
    if positional:
        try:
            hints = typing.get_type_hints(target)
        except Exception:
            hints = {}
        hint = hints.get(positional[0].name)
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            model = hint
    return HandlerInfo(func=func, is_async=is_async, takes_ctx=takes_ctx, payload_model=model)


def handler_arguments(info: HandlerInfo, payload: Any, ctx: Any) -> tuple[Any, ...]:
    """Positional arguments for ``info.func``: the payload (a model instance if it wants one), and ``ctx``."""
    if info.payload_model is not None:
        payload = info.payload_model.model_validate(payload)
    return (payload, ctx) if info.takes_ctx else (payload,)
