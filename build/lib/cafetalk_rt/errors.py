"""Exceptions the runtime raises for problems the user can fix.

Every message names the file or option at fault, says what is wrong with it and how to fix it.
Each class also derives from the matching builtin, so ``except ValueError`` /
``except FileExistsError`` in calling code keeps working; ``except CafeTalkError`` catches
all of them (the CLI turns these into a one-line message and a non-zero exit status).
"""
from __future__ import annotations


class CafeTalkError(Exception):
    """Base class of every error ``cafetalk_rt`` raises on purpose."""


class AudioInputError(CafeTalkError, ValueError):
    """An input audio file or array is missing, unreadable, empty, too short, non-finite or
    silent."""


class OutputExistsError(CafeTalkError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""


class InputError(CafeTalkError, ValueError):
    """A bad option or argument: unsupported file extension, wrong array shape, missing output
    directory, values out of range."""


class MissingDependencyError(CafeTalkError, ImportError):
    """An optional part is not installed (a pip extra) or not built (an exported graph); the
    message names the command that installs or builds it."""
