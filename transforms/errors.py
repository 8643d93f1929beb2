"""Errors that end a command with one readable line instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, missing token...).

    The message is printed as-is after ``poet <command>: error:``, so it should
    say what is wrong and what to do, in one line.
    """


class InputFileError(UserError):
    """An input file that cannot be read to its end (damaged gzip, vanished, not a regular file...).

    Raised on a worker, where the runner wraps it in its own error (on
    Dataflow, as text in a remote traceback), so its message carries a marker
    the launcher finds again in whatever the runner raises: :meth:`find`.
    """

    MARKER = "[poet input file error] "

    def __init__(self, path: str, problem: str):
        super().__init__(self.MARKER + unreadable_file(path, problem))

    @classmethod
    def find(cls, err: BaseException) -> UserError | None:
        """The input-file problem behind a runner's error, as a :class:`UserError`, or None."""
        seen = err
        while seen is not None:
            if isinstance(seen, cls):
                return UserError(str(seen).removeprefix(cls.MARKER))
            seen = seen.__cause__ or seen.__context__
        text = str(err)
        start = text.find(cls.MARKER)
        if start < 0:
            return None
        return UserError(first_line(text[start + len(cls.MARKER):]).rstrip("'\")"))


def unreadable_file(path: str, problem: str) -> str:
    return f"cannot read {path} ({problem}); nothing was written: fix or remove the file and run again"


def describe(err: BaseException) -> str:
    """``Type: first line of the message``, short enough for a dead letter's ``detail``."""
    first = first_line(str(err))[:300]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def did_you_mean(name: str, candidates) -> str | None:
    """The candidate closest to a mistyped ``name`` (``--max_length`` → ``--max-length``), or None."""
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def first_line(value: object) -> str:
    """The first line of ``str(value)``, for one-line messages; an exception without a message gives its type's
    name, anything else without text gives ``""``."""
    text = str(value).strip()
    if text:
        return text.splitlines()[0]
    return type(value).__name__ if isinstance(value, BaseException) else ""
