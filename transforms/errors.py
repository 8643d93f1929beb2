"""Errors that end a command with one readable line instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, missing token...).

    The message is printed as-is after ``poet <command>: error:``, so it should
    say what is wrong and what to do, in one line.
    """
