"""One exception family. Messages name the file, row, column or value at fault; the CLI prints them on one line."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class MicroexpError(Exception):
    """Base class for every error microexp raises on purpose."""


class DataError(MicroexpError):
    """A dataset tree or annotation file is missing, empty or malformed."""


class AnnotationError(DataError):
    """An annotation file is malformed. Carries the file, row and column where known."""

    def __init__(self, message: str, *, file: object = None, row: int | None = None, column: str | None = None):
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.file, self.row, self.column = file, row, column


class ConfigError(MicroexpError):
    """A run configuration, model name or option value is invalid."""


class PreprocessError(MicroexpError):
    """A clip could not be preprocessed (no face, unreadable frame, ...)."""


class InputError(DataError):
    """An input to analyse (a video file, a frame folder, frames given as arrays) that cannot be read or has too
    little in it. ``source`` names the input as the caller gave it (the message starts with it), ``reason`` says
    what is wrong, so a caller that shows the input under another name needs no message rewriting."""

    def __init__(self, source: object, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = str(source), reason


class UnusableInputError(InputError, PreprocessError):
    """An input that was read but gave no window the model can classify (no face in any, ...)."""
