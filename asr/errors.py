"""The one exception users see: a clear one-line message naming the file and the problem."""


class ASRError(Exception):
    """A user-facing error. The CLI prints `error: <message>` and exits non-zero, no traceback."""


def file_error(path, problem: str) -> ASRError:
    return ASRError(f"{path}: {problem}")
