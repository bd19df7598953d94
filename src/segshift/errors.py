"""Exceptions that carry a message meant for the user: what went wrong and where."""


class SegshiftError(Exception):
    """Base class for errors the command line reports without a traceback."""


class ConfigError(SegshiftError, ValueError):
    """A configuration key is unknown, mistyped or inconsistent; the message names the key."""


class DataError(SegshiftError, RuntimeError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""


class CheckpointError(SegshiftError, RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model."""


class TrainingError(SegshiftError, RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite)."""


class WriteError(SegshiftError, OSError):
    """A file could not be written (disk full, permissions); names the file. Files written
    before stay intact (writes are atomic). Still an ``OSError`` for callers that catch those."""

    def __str__(self) -> str:
        return str(self.strerror if self.strerror else super().__str__())


class TrainingInterrupted(SegshiftError):
    """A signal asked training to stop; a checkpoint was written first.

    ``exit_code`` follows the shell's convention, 128 + the signal number (143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int = 15) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class UnknownNameError(ConfigError, KeyError):
    """A dataset, model or method name is not registered; the message suggests the closest."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
