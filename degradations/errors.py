"""Errors that mean "the input is wrong", as opposed to a bug.

The `perceive-ir` command prints a `UserError` as one line and exits with
status 2; any other exception is a bug and shows its traceback. The shard
builder likewise records only the failures of a photo (it cannot be decoded
or converted) or of a sample (a tier out of reach), and fails on anything
else. Every class is also the built-in exception a caller
would expect (`ValueError`, `FileNotFoundError`...), so `except ValueError`
keeps working.

These live in the engine, the package every other one imports, so that
`shards` and `pipeline` raise the same types.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input the user can fix: an unknown type, a malformed argument, a folder that is no build."""


class InputNotFound(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class OutputExists(UserError, FileExistsError):
    """An output location holds something that must not be replaced without being asked to."""


class NotWritable(UserError, PermissionError):
    """An output location cannot be written."""
