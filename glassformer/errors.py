"""Errors a user can act on: the CLI prints their message as one line, never a traceback."""


class GlassformerError(Exception):
    """A problem with the user's input or files; the message says what to do."""


class ConfigError(GlassformerError, ValueError):
    """An invalid configuration value; the message names the field."""
