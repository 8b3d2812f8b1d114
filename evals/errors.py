"""Errors of the evals package: one message naming what is wrong and how to fix it."""


class EvalError(ValueError):
    """A dataset, task, length or sample field is not usable (the message says how to fix it)."""


class DatasetNotAvailableError(EvalError):
    """A dataset could not be loaded offline (hub unreachable, path missing)."""
