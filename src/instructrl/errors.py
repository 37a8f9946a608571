"""Errors a user can cause and fix. The CLI prints these as one clear message, without a traceback."""

from __future__ import annotations


class InstructRLError(Exception):
    """Base class for user-facing errors (bad input, bad config, bad model folder)."""


class ConfigError(InstructRLError):
    """A config key that does not exist, a value of the wrong type, or an out-of-range value."""


class DataError(InstructRLError):
    """A bad record in an input file, located by file, line number (1-based) and field."""

    def __init__(self, path, line: int | None, field: str | None, message: str):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where = self.path or "<data>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class ModelFolderError(InstructRLError):
    """A model folder that is missing files or is the wrong kind (e.g. an RM given as a policy)."""


class TrainingStopped(InstructRLError):
    """A run stopped on purpose: too many consecutive non-finite steps, or a KL explosion.

    The message says why, at which step, and where the last good checkpoint is.
    """
