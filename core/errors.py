"""User-facing errors: the CLI prints their one-line message, never a traceback."""


class TandemError(Exception):
    """A user's mistake or an environment problem, with a message that names the fix."""
