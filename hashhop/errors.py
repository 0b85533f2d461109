"""The one user-facing error type: a message that names the problem and the way out."""


class HashHopError(ValueError):
    """Bad input. ``str(err)`` is a single line fit to show a user as is."""
