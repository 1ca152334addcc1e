"""The errors a user can fix, each reported as one line (never a traceback) by the command line."""
from __future__ import annotations


class RegistryError(LookupError):
    """Unknown or duplicate registry name; the message is meant for the user as is."""


class DataError(ValueError):
    """Missing or malformed data; the message names the file and what to do."""


class ResultsError(OSError):
    """A results folder or record that cannot be written or read."""


class BackboneError(ValueError):
    """A backbone that cannot be built or whose weights cannot be loaded."""


class DeviceError(ValueError):
    """A device that does not exist or that this machine lacks."""


# The failures that are the user's to fix (bad names, data, options, folders, a diverged run):
# the CLI reports them in one line; `ablate` logs them per cell and goes on with the others.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    RegistryError, DataError, BackboneError, DeviceError, ResultsError, ValueError, FloatingPointError,
)
