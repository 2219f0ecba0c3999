"""Which handler scores a pipeline's rows: the exported model loaded in the pipeline, or a remote
endpoint (`mnistkit serve`, Vertex AI) that the pipeline calls; the pipelines ask here, by URI."""

from __future__ import annotations

from apache_beam.ml.inference.base import ModelHandler

from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.inference.hot_swap import StreamModelHandler
from mnistkit.pipeline.inference.remote import (
    RemoteBatchHandler,
    RemoteStreamHandler,
    endpoint_token,
    is_endpoint,
    predict_url,
)
from mnistkit.pipeline.inference.savedmodel import ModelInfo, validate_model

__all__ = ["batch_handler", "check_model", "stream_handler"]


def check_model(uri: str) -> ModelInfo:
    """The checked model behind `uri`: an export's version (validate_model), or an endpoint as given."""
    if is_endpoint(uri):
        predict_url(uri)  # raises EndpointError for a malformed one
        return ModelInfo(uri, "remote")
    return validate_model(uri)


def batch_handler(
    uri: str, *, min_batch: int, max_batch: int, intra_op_threads: int = 0, inter_op_threads: int = 0
) -> tuple[ModelInfo, ModelHandler]:
    """The batch pipeline's handler for `uri`; with an endpoint, `max_batch` rows go per request (with
    the bearer token of $MNISTKIT_ENDPOINT_TOKEN, when set)."""
    model = check_model(uri)
    if is_endpoint(uri):
        handler = RemoteBatchHandler(
            uri, min_batch_size=min_batch, max_batch_size=max_batch, max_rows=max_batch, token=endpoint_token()
        )
        return model, handler
    handler = SavedModelHandler(
        model.uri,
        min_batch_size=min_batch,
        max_batch_size=max_batch,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )
    return model, handler


def stream_handler(uri: str, *, max_batch: int, check_seconds: float) -> ModelHandler:
    """The stream's handler for `uri`: a micro-batch per model call, or per request to an endpoint."""
    if is_endpoint(uri):
        return RemoteStreamHandler(uri, max_rows=max_batch, token=endpoint_token())
    return StreamModelHandler(uri, max_batch=max_batch, check_seconds=check_seconds)
