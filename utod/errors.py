"""Errors that mean "the user's input is wrong" (bad file, bad flag, bad config). The CLI
prints them without a traceback and exits with code 2. Say which file and line is wrong."""

from __future__ import annotations


class UserError(Exception):
    """Base class for errors caused by user input."""


class ConfigError(UserError):
    """A flag, config file or checkpoint setting is invalid."""


class DataError(UserError):
    """The dataset cannot be used (missing folder, no images, unreadable names file, ...)."""


class CheckpointError(UserError):
    """A checkpoint cannot be read or rebuilt (missing file, missing head plugin, ...)."""


class StorageError(UserError):
    """A file or folder cannot be written (disk full, read-only, permission denied). The
    message names the path; nothing half-written is left under the final name."""


class RunLockedError(UserError):
    """Another live ``utod train`` holds the run folder's lock."""


class NonFiniteError(UserError):
    """Weights, losses or model outputs are NaN/Inf; nothing non-finite is scored or saved."""
