"""Errors that are the user's to fix (missing data, bad config, short quota) become a one-line
message and exit status 1, not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click


def user_errors(error_types: Callable[[], tuple[type[Exception], ...]]) -> Callable[[Callable], Callable]:
    """Decorate a command so the exceptions `error_types()` names surface as click errors.

    `error_types` is called only when something was raised, so the modules that define those
    exceptions (Beam, TensorFlow behind them) load only then and `mnistkit --help` stays fast.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, error_types()):
                    raise click.ClickException(str(exc)) from exc
                raise

        return wrapper

    return decorate
