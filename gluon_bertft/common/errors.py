"""Every error the package raises on bad input, in one place.

Each is a ``ValueError`` whose message names the file, line, field or option at fault; the
CLI prints it as ``error: ...`` and exits with code 2.
"""


class DataError(ValueError):
    """A data file that cannot be read as the task's input (names the file and line)."""


class PretrainedError(ValueError):
    """A pretrained model, saved model or checkpoint that cannot be fetched or does not fit."""


class ConfigError(ValueError):
    """An option or configuration value that does not apply or is out of range (names it)."""


class DivergedError(ValueError):
    """Training produced a non-finite loss or weights (names the step); nothing is saved."""


def shorten(value, limit=60):
    """``repr(value)``, cut to about ``limit`` characters: error messages quote input, and a
    1 MB token must not print a megabyte."""
    return cut(repr(value), limit)


def cut(text, limit=200):
    """``text`` cut to about ``limit`` characters (a list of names in a message)."""
    return text if len(text) <= limit else f'{text[:limit - 20]}...{text[-12:]} ({len(text)} chars)'


class WriteError(OSError):
    """An output could not be written (a full or read-only disk, no permission): the message
    names the path and the cause; nothing half-written is left."""
