"""simcast's error model: what a user can cause ends as one line naming the file or option and the problem.

    SimcastError              base; exit code 1
      InputError(path, ..)    a source file, store or checkpoint that cannot be used as it is
        StoreError            a store that is damaged (a chunk missing or corrupt)
      OutputError(path, ..)   an output path that simcast refuses (not its own) or cannot write
      UsageError(option, ..)  a bad option or parameter (exit code 2, like a command-line usage error)

`data_catalog.CatalogError` (a catalog that cannot be used) and `simvp.checkpoint.CheckpointError` (a checkpoint
that is unreadable, changed or does not fit) belong to the same family: those packages import nothing of ours,
so they keep their own classes and `USER_ERRORS` lists all three. Any other exception is a bug in simcast and
keeps its traceback.
"""

from __future__ import annotations

from data_catalog import CatalogError
from simvp.errors import CheckpointError

USAGE_EXIT_CODE = 2


class SimcastError(Exception):
    """Base of every error simcast reports to a user as a single line."""

    exit_code = 1


class InputError(SimcastError):
    """Bad input data: a missing, corrupt or inconsistent source file, store or checkpoint."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StoreError(InputError):
    """A damaged store: an array's chunk is missing or does not match its checksum."""


class OutputError(SimcastError):
    """An output path simcast will not replace (it did not write what is there) or cannot write."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UsageError(SimcastError):
    """A bad option or parameter. `option` is its Python name (lead_hours); front ends show it their way
    (`--lead-hours` on the command line, `lead_hours` in a flow)."""

    exit_code = USAGE_EXIT_CODE

    def __init__(self, option: str, problem: str):
        self.option = option
        self.problem = problem
        super().__init__(f"{option}: {problem}")

    def render(self, flag) -> str:
        """The message with the option shown as `flag(option)` returns, e.g. `--lead-hours`."""
        return f"{flag(self.option)}: {self.problem}"


USER_ERRORS = (SimcastError, CatalogError, CheckpointError)


def exit_code(error: BaseException) -> int:
    if isinstance(error, SimcastError):
        return error.exit_code
    if isinstance(error, CatalogError):
        return USAGE_EXIT_CODE  # the catalog is configuration: a wrong name or field, like a wrong option
    return 1


def cli_flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def one_line(error: BaseException, flag=cli_flag) -> str:
    """The user-facing line of a user error (options rendered by `flag`)."""
    text = error.render(flag) if isinstance(error, UsageError) else str(error)
    return " ".join(text.split()) or type(error).__name__
