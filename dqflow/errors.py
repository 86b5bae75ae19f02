"""Typed errors raised by dqflow. Every message says what went wrong and where."""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_CHARS = 1000
"""No single problem's message is longer than this: a huge value is cut with "…"."""

MAX_PROBLEMS_LISTED = 50
"""A ``ValidationFailed`` lists at most this many problems, then says how many more there were."""


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ending with "…" when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_KINDS = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a mapping"}


def kind_of(value: object) -> str:
    """What sort of value ``value`` is, for a message: "a string", "a mapping", "null", ..."""
    if value is None:
        return "null"
    return _KINDS.get(type(value), type(value).__name__)


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters."""
    return shorten(repr(value), limit)


class DqflowError(Exception):
    """Base class of every error dqflow raises on purpose."""


class ConfigError(DqflowError):
    """A declaration (``jobs.yaml`` or a schema it names) is invalid.

    ``file``, ``line`` and ``key`` locate the problem when they are known.
    """

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.reason = shorten(message)
        where = ""
        if file:
            where = file if line is None else f"{file}:{line}"
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {self.reason}" if where else self.reason)


class DeclarationError(ConfigError):
    """Several problems in one declaration; ``problems`` holds one ConfigError each.

    ``file``/``line``/``key`` are those of the first problem; the message lists all.
    """

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.reason, file=first.file, line=first.line, key=first.key)
        # Each problem's message is bounded already; the list of them is not cut.
        self.reason = first.reason + "".join(f"\n{problem}" for problem in problems[1:])
        self.args = (str(first) + "".join(f"\n{problem}" for problem in problems[1:]),)
        self.problems = problems


def raise_all(problems: list[ConfigError]) -> None:
    """Raise the one problem, or a :class:`DeclarationError` listing them all in line order."""
    problems = sorted(problems, key=lambda p: p.line if p.line is not None else 1 << 60)
    if len(problems) == 1:
        raise problems[0]
    raise DeclarationError(problems)


class ValidationFailed(DqflowError):
    """A value failed a JSON Schema or is not JSON. ``errors`` lists each problem."""

    def __init__(self, what: str, errors: list[str]) -> None:
        self.what = shorten(what)
        listed = [shorten(error) for error in errors[:MAX_PROBLEMS_LISTED]]
        if len(errors) > MAX_PROBLEMS_LISTED:
            listed.append(f"… and {len(errors) - MAX_PROBLEMS_LISTED} more")
        self.errors = listed
        super().__init__(f"{self.what}: " + "; ".join(self.errors))

    def located(self, where: str) -> ValidationFailed:
        """The same error with ``where`` (e.g. ``job 3``) in front of what it is about."""
        self.what = f"{where}: {self.what}"
        self.args = (f"{self.what}: " + "; ".join(self.errors),)
        return self


class PayloadValidationError(ValidationFailed):
    """A payload is not JSON or does not match its job type's payload schema."""


class OutputValidationError(ValidationFailed):
    """An output is not JSON or does not match its job type's output schema."""


class UnknownJobTypeError(PayloadValidationError):
    """A job type that the declaration does not name (refused like a bad payload)."""

    def __init__(self, message: str) -> None:
        super().__init__("job_type", [message])


class TooLargeError(ValidationFailed):
    """A payload or output is larger than its configured limit (``limits`` in ``jobs.yaml``)."""


class PayloadTooLargeError(TooLargeError, PayloadValidationError):
    """A payload is larger than ``limits.max_payload_bytes``."""


class OutputTooLargeError(TooLargeError, OutputValidationError):
    """An output is larger than ``limits.max_output_bytes``."""


class OutputParseError(DqflowError):
    """Stored output could not be parsed into the requested model."""


class JobNotFoundError(DqflowError):
    """No job has the given id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}")


class WaitTimeoutError(DqflowError, TimeoutError):
    """``Queue.wait`` gave up: the job had not finished within the timeout."""

    def __init__(self, job_id: int, timeout: float, status: str) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"job {job_id} did not finish within {timeout:g} s (still {status})")


class WorkflowWaitTimeoutError(DqflowError, TimeoutError):
    """``Queue.wait_workflow`` gave up: the run had not finished within the timeout (it goes on)."""

    def __init__(self, run_id: int, timeout: float, status: str) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"workflow run {run_id} did not finish within {timeout:g} s (still {status})")


class JobFailedError(DqflowError):
    """A job waited for through a typed ``JobRef`` ended without completing (failed or cancelled)."""

    def __init__(self, record: Any) -> None:
        self.record = record
        history = record.error_history
        last = f": {history[-1].get('error')}" if history else ""
        super().__init__(f"job {record.id} ({record.job_type}) {record.status.value}{last}"[:2000])


class WorkflowFailedError(DqflowError):
    """A run waited for through a typed ``RunRef`` ended without completing (failed or cancelled)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        why = f": {run.error}" if run.error else ""
        super().__init__(f"workflow run {run.id} ({run.name}) {run.status.value}{why}"[:2000])


class InvalidJobStateError(DqflowError):
    """The job is in a state that does not allow the operation."""


class DependencyError(DqflowError):
    """A job's ``depends_on`` names a job that does not exist or can no longer complete."""


class StorageError(DqflowError):
    """The backend could not be reached or refused an operation."""


class NotMigratedError(StorageError):
    """The database has no dqflow schema yet (or an old one)."""


class StorageTooNewError(StorageError):
    """The stored data was written by a newer dqflow (a storage version this code does not know)."""


class StepError(DqflowError):
    """A durable handler misused ``ctx.step`` (a name used twice in one run, a result that is not JSON)."""


class TokenError(DqflowError):
    """A wait token cannot be used as asked; the subclasses say why. Nothing was changed."""


class TokenNotFoundError(TokenError):
    """No token has this id."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {shorten(token_id, 100)!r} not found")
        self.token_id = token_id


class TokenAlreadyCompletedError(TokenError):
    """The token was completed before: its data is kept, the new data is refused."""


class TokenExpiredError(TokenError):
    """The token's timeout passed (its job resumed without the data), or its job is finished."""


_JOB_ENDS = {"completed": "completed", "failed": "failed for good", "cancelled": "cancelled"}


class TokenJobFinishedError(TokenExpiredError):
    """The token's job is finished (cancelled, failed for good, completed) or deleted: nothing
    will ever wait for the data, so it is refused (the token reads as ``abandoned``)."""

    def __init__(self, token_id: str, job_id: int | str, job_status: str | None) -> None:
        ended = _JOB_ENDS.get(job_status or "", "deleted")
        super().__init__(
            f"token {shorten(token_id, 100)} can no longer be completed: its job {job_id} was {ended}"
            " (the token is abandoned)"
        )
        self.token_id = token_id
        self.job_id = int(job_id)
        self.job_status = job_status


class TokenTimeout(DqflowError):
    """Raised at ``ctx.wait_for_token`` when the token timed out before anyone completed it."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {token_id} timed out before it was completed")
        self.token_id = token_id


class UnknownWorkflowError(PayloadValidationError):
    """A workflow name that the declaration does not declare (refused like a bad input)."""

    def __init__(self, message: str) -> None:
        super().__init__("workflow", [message])


class WorkflowRunNotFoundError(DqflowError):
    """No workflow run has the given id."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"no workflow run with id {run_id}")


class InvalidWorkflowStateError(DqflowError):
    """The workflow run is in a state that does not allow the operation (nothing was changed)."""
