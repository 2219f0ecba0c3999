"""Which handler scores a pipeline's rows: the exported model loaded in the pipeline, or a remote
endpoint (`mnistkit serve`, Vertex AI) that the pipeline calls; the pipelines ask here, by URI."""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.ml.inference.base import ModelHandler

from mnistkit.model_export.export import DEFAULT_FRAMEWORK
from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.inference.hot_swap import StreamModelHandler
from mnistkit.pipeline.inference.remote import (
    RemoteBatchHandler,
    RemoteStreamHandler,
    endpoint_token,
    is_endpoint,
    predict_url,
)
from mnistkit.pipeline.inference.runtimes import RuntimeOptions, call_rows, check_runtime
from mnistkit.pipeline.inference.savedmodel import ModelInfo, validate_model

__all__ = ["REMOTE", "Scorer", "batch_handler", "check_model", "check_scorer", "stream_handler"]

# The runtime named for rows scored by an endpoint (the summary's `runtime`).
REMOTE = "remote"
# Rows per request to an endpoint by default (requests are also cut to the 1.5 MB limit, rest.py).
ENDPOINT_REQUEST_ROWS = 256


class Scorer(NamedTuple):
    """What will score a run's rows: the checked model, its Beam handler, and the runtime's name."""

    model: ModelInfo
    handler: ModelHandler
    runtime: str


def check_model(uri: str) -> ModelInfo:
    """The checked model behind `uri`: an export's version (validate_model), or an endpoint as given."""
    if is_endpoint(uri):
        predict_url(uri)  # raises EndpointError for a malformed one
        return ModelInfo(uri, "remote")
    return validate_model(uri)


def check_scorer(uri: str, runtime: RuntimeOptions, here: bool) -> tuple[ModelInfo, str]:
    """The checked model behind `uri` and the name of the runtime that will score with it.

    Checked before anything runs: a run `here` fully, a remote one for what holds on every
    worker (check_runtime); an endpoint is its own runtime.
    """
    model = check_model(uri)
    if is_endpoint(uri):
        return model, REMOTE
    return model, check_runtime(runtime, model.metadata.get("framework", DEFAULT_FRAMEWORK), here=here)


def batch_handler(
    uri: str, *, min_batch: int | None, max_batch: int | None, runtime: RuntimeOptions, here: bool
) -> Scorer:
    """The batch pipeline's scorer for `uri`, with model calls (or requests to an endpoint, with the
    bearer token of $MNISTKIT_ENDPOINT_TOKEN when set) of at most `max_batch` rows: by default the
    runtime's own (runtimes.call_rows), ENDPOINT_REQUEST_ROWS per request. `min_batch` defaults
    to the same: rows arrive batched, so Beam then only tops up short tail batches."""
    model, name = check_scorer(uri, runtime, here)
    if is_endpoint(uri):
        rows = max_batch or ENDPOINT_REQUEST_ROWS
        handler = RemoteBatchHandler(
            uri, min_batch_size=min_batch or rows, max_batch_size=rows, max_rows=rows, token=endpoint_token()
        )
    else:
        rows = max_batch or call_rows(name)
        handler = SavedModelHandler(model.uri, min_batch_size=min_batch or rows, max_batch_size=rows, runtime=runtime)
    return Scorer(model, handler, name)


def stream_handler(uri: str, *, max_batch: int, check_seconds: float, runtime: RuntimeOptions) -> ModelHandler:
    """The stream's handler for `uri`: a micro-batch per model call, or per request to an endpoint."""
    if is_endpoint(uri):
        return RemoteStreamHandler(uri, max_rows=max_batch, token=endpoint_token())
    return StreamModelHandler(uri, max_batch=max_batch, check_seconds=check_seconds, runtime=runtime)
