"""Errors that are the user's doing (bad path, bad option): reported without a traceback."""


class UserError(Exception):
    """A problem the user can fix: the message names the file/option and the reason."""
