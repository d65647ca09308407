"""Any exception -> (exit code, one line for the user): the command line's error policy.

Exit 2: the input, the options or the machine's resources are the problem, and the line says
what to change. Exit 1: a bug; the line says so and how to see the traceback (``--debug``).
"""

from __future__ import annotations

from .files.output_dir import describe_os_error

_MEMORY_ADVICE = "lower --sw-batch-size or --roi, or use a coarser spacing or a smaller volume"
_OOM_MARKERS = ("out of memory", "can't allocate memory", "failed to allocate memory", "bad_alloc")


def describe_error(err: BaseException) -> tuple[int, str]:
    """The exit code and a single-line message for ``err`` (no traceback, no internal names)."""
    if isinstance(err, MemoryError):
        return 2, _one_line(str(err)) or f"out of memory; {_MEMORY_ADVICE}"
    if isinstance(err, (FileNotFoundError, FileExistsError, ValueError)):
        return 2, _one_line(str(err)).strip("'\"")
    if isinstance(err, OSError):
        return 2, _os_message(err)
    if isinstance(err, RuntimeError):
        text = _one_line(str(err))
        if any(marker in text.lower() for marker in _OOM_MARKERS):
            return 2, f"out of memory ({_last_clause(text)}); {_MEMORY_ADVICE}"
        return 2, _last_clause(text)
    return 1, (
        f"internal error ({type(err).__name__}: {_one_line(str(err))}); rerun with --debug for the "
        "traceback and report it"
    )


def _os_message(err: OSError) -> str:
    hint = describe_os_error(err)
    where = err.filename
    if hint != (err.strerror or str(err)):  # a known errno: say what to do
        return f"cannot write '{where}': {hint}" if where else hint
    text = _one_line(err.strerror or str(err))
    return f"'{where}': {text}" if where else text


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _last_clause(text: str) -> str:
    """ITK and PyTorch put the useful part last ('... RuntimeError: the reason')."""
    return text.rsplit("ERROR: ", 1)[-1].strip() or text
