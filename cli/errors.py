"""Errors that are the user's to fix (missing data, bad config, short quota, a wrong model path)
become a one-line message and exit status 1, not a traceback, on every command alike."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

__all__ = ["user_error_types", "user_errors"]


@functools.cache
def user_error_types() -> tuple[type[Exception], ...]:
    """Every exception type the library raises for a problem the user can fix.

    Imported only once something was raised, so the modules that define them (Beam, TensorFlow
    behind them) load only then and `mnistkit --help` stays fast.
    """
    from mnistkit.model_export.datasets import DatasetError
    from mnistkit.model_export.distributed import ClusterError
    from mnistkit.model_export.evaluate import EvaluationError
    from mnistkit.model_export.torch_models import TorchError
    from mnistkit.pipeline.batch import OutputExistsError, RunFailedError
    from mnistkit.pipeline.cloud.config import ConfigError
    from mnistkit.pipeline.cloud.doctor import QuotaError
    from mnistkit.pipeline.cloud.training import VertexJobError
    from mnistkit.pipeline.cloud.vertex import VertexError
    from mnistkit.pipeline.inference.remote import EndpointError
    from mnistkit.pipeline.inference.runtimes import RuntimeUnavailable
    from mnistkit.pipeline.inference.savedmodel import ModelError
    from mnistkit.pipeline.io.bigquery import BigQueryError
    from mnistkit.pipeline.io.files import InputError
    from mnistkit.pipeline.io.formats import FormatError
    from mnistkit.pipeline.io.google_apis import EndpointRefused
    from mnistkit.pipeline.io.streams import StreamInputError

    return (
        DatasetError,
        EvaluationError,
        TorchError,
        InputError,
        FormatError,
        ModelError,
        EndpointError,
        RuntimeUnavailable,
        OutputExistsError,
        RunFailedError,
        BigQueryError,
        StreamInputError,
        ConfigError,
        EndpointRefused,
        QuotaError,
        VertexError,
        ClusterError,
        VertexJobError,
        FileNotFoundError,
    )


def user_errors(fn: Callable) -> Callable:
    """Decorate a command so the user's errors (see user_error_types) surface as click errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            if isinstance(exc, user_error_types()):
                raise click.ClickException(str(exc)) from exc
            raise

    return wrapper
