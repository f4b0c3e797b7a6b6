"""The project's error classes. Ground layer: imports nothing of ours.

Every error a user can act on (a config value, an input file, a name, a server or hub that misbehaves)
derives from `MedSSRError`. The CLI turns those, and the file-system errors that name their path, into
one line and exit 2; anything else is a bug and keeps its traceback. Each class also derives from the
built-in it replaced (`ValueError`, `RuntimeError`, `KeyError`), so callers that caught those still do.
"""

from __future__ import annotations


class MedSSRError(Exception):
    """Base of every error the project raises for a user to fix."""


class InputError(MedSSRError, ValueError):
    """A value, file or name we were given and cannot use."""


class ServiceError(MedSSRError, RuntimeError):
    """A server, hub or engine that failed or answered what we cannot use."""


class ConfigError(InputError):
    """A config that cannot work: unknown key, bad value, malformed YAML. One line, no traceback."""
