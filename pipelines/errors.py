"""Errors a user sees as one line: which file, what is wrong, what was expected."""


class SimcastError(Exception):
    """Base of every error simcast reports to a user as a single line."""


class InputError(SimcastError):
    """Bad input data: a missing, corrupt or inconsistent source file or store."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
