"""The producer side of wait tokens: the data that completes one, checked against its schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dqflow.declaration.schemas import SchemaValidator
from dqflow.durable.model import TokenRecord
from dqflow.errors import PayloadTooLargeError, PayloadValidationError, TokenError
from dqflow.json_values import dumps

if TYPE_CHECKING:
    from dqflow.declaration import Declaration


def token_data_json(declaration: Declaration, token: TokenRecord, data: Any) -> str:
    """``data`` as JSON text, valid against the token's schema (its ``signals:`` name or inline
    schema) and within the payload size limit; ``PayloadValidationError`` otherwise, or
    ``TokenError`` when the token names a signal this declaration does not declare."""
    label = f"data of token {token.id}"
    text = dumps(data, PayloadValidationError, label)
    limit = declaration.limits.max_payload_bytes
    if len(text) * 4 > limit and len(text.encode()) > limit:
        raise PayloadTooLargeError(label, [f"{len(text.encode())} bytes is over the limit of {limit} bytes"])
    schema: SchemaValidator | None = None
    if token.signal is not None:
        schema = declaration.signals.get(token.signal)
        if schema is None:
            known = ", ".join(sorted(declaration.signals)) or "none"
            raise TokenError(
                f"token {token.id} takes data of signal {token.signal!r}, which this declaration does not"
                f" declare (signals: {known}): complete it where jobs.yaml declares it"
            )
    elif token.data_schema is not None:
        schema = SchemaValidator(token.data_schema, name=f"schema of token {token.id}")
    if schema is not None:
        schema.validate(data, PayloadValidationError, label)
    return text
