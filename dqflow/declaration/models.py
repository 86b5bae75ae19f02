"""Pydantic models standing for payload and output schemas.

In ``Declaration.build`` a job's ``payload`` / ``output`` may be a model class; in
``jobs.yaml`` a ``module:Model`` reference (``payload: myapp.models:Report``). Either
way the model's JSON Schema (``model_json_schema()``, draft 2020-12) is what
validates, through the same ``SchemaValidator`` as a schema file.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from dqflow.declaration.handlers import HandlerImportError, import_handler

MODEL_REF = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
"""``module:Model`` (a schema path never matches: it has a ``/`` or a ``.json`` without a ``:``)."""

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


class ModelSchemaError(Exception):
    """A model reference that does not import, is not a pydantic model, or has no JSON Schema."""


def is_model(value: Any) -> bool:
    """True for a pydantic model class."""
    return isinstance(value, type) and issubclass(value, BaseModel)


def model_ref(model: type[BaseModel]) -> str:
    """``module:Qualname`` of a model, for messages."""
    return f"{model.__module__}:{model.__qualname__}"


def import_model(ref: str) -> type[BaseModel]:
    """The model ``module:Model`` names; ``ModelSchemaError`` saying why not."""
    try:
        found: Any = import_handler(ref)
    except HandlerImportError as exc:
        raise ModelSchemaError(str(exc)) from exc
    if not is_model(found):
        kind = type(found).__name__ if not isinstance(found, type) else f"class {found.__name__}"
        raise ModelSchemaError(f"{ref} is not a pydantic model (a BaseModel subclass), it is a {kind}")
    return found  # type: ignore[no-any-return]


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema for validating JSON input, marked draft 2020-12."""
    try:
        schema = model.model_json_schema(mode="validation")
    except Exception as exc:  # pydantic's PydanticInvalidForJsonSchema and friends
        raise ModelSchemaError(f"{model_ref(model)} has no JSON Schema: {exc}") from exc
    return {"$schema": DRAFT_2020_12, **schema}
