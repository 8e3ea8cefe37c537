"""The one exception type for bad input anywhere in cvgl_ros.

Core code raises `InputError` with a message that says, in one line, what is wrong and
what was expected. The CLI prints that line and exits with status 2; nodes report it on
/diagnostics. Programming errors are not InputErrors and keep their tracebacks.
"""


class InputError(ValueError):
    """Bad user or sensor input: a one-line message, never a traceback."""
