"""Reading a saved result for a command: a file that cannot be used is a BadInput saying
`file: why` (missing, unreadable, not JSON, not a result), which the commands show with exit
status 4."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line starts without pydantic; a command loads it
    from evalgate.results import RunResult


class BadInput(Exception):
    """A result file that cannot be used: shown as `file: reason`, exit status 4."""


def load_result(path: str) -> RunResult:
    """The result saved at `path`, or a BadInput naming the file and what is wrong."""
    from pydantic import ValidationError

    from evalgate.results import read_result

    try:
        return read_result(Path(path))
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            raise BadInput(f"{path}: not valid JSON: {errors[0]['msg']}") from None
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        why = errors[0]["msg"] if errors else str(exc)
        raise BadInput(f"{path}: not an evalgate result: {where}: {why} "
                       f"({len(errors)} problem(s))") from None
