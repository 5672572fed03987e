"""The base of damokit's own user-facing errors; the CLI prints them on one line, without a stack trace."""

__all__ = ["DamokitError"]


class DamokitError(Exception):
    """A problem with the user's input, files or names (not a bug in damokit)."""
