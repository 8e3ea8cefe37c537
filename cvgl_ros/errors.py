"""The one exception type for bad input anywhere in cvgl_ros.

Core code raises `InputError` with a message that says, in one line, what is wrong and
what was expected. The CLI prints that line and exits with status 2; nodes report it on
/diagnostics. Programming errors are not InputErrors and keep their tracebacks.
"""


class InputError(ValueError):
    """Bad user or sensor input: a one-line message, never a traceback."""


def read_json(path, what: str = ""):
    """The JSON value in the file `path` (a `pathlib.Path`); InputError "<what> <path> is not
    valid JSON: ..." when it cannot be read as UTF-8 JSON (the caller checks that it exists
    first, with its own hint, and what the value must hold)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what + ' ' if what else ''}{path} is not valid JSON: {exc}") from None
