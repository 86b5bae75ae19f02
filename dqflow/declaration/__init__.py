"""The declaration layer: ``jobs.yaml`` (or dicts in code) → validated, compiled job types."""

from dqflow.declaration.loader import Declaration, DeclarationError, find_config, load_declaration
from dqflow.declaration.model import JobTypeSpec, Limits, RetryPolicy, WorkerSettings
from dqflow.declaration.schemas import SchemaValidator

__all__ = [
    "Declaration",
    "DeclarationError",
    "JobTypeSpec",
    "Limits",
    "RetryPolicy",
    "SchemaValidator",
    "WorkerSettings",
    "find_config",
    "load_declaration",
]
