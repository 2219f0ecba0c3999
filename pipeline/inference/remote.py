"""Remote inference: the pipelines call an online endpoint (`mnistkit serve`, a Vertex AI endpoint)
instead of loading the model themselves.

Built on Beam's RemoteModelHandler, which brings client-side throttling (it backs off when the
service starts refusing) and retries with exponential backoff. Each batch of rows becomes as few
requests as the size limit allows (inference/rest.py: 1.5 MB, `max_rows` instances). A request
that fails with a status worth retrying (429, 5xx, a dropped connection, a timeout) is retried
as a whole batch, but only its own requests are sent again, not those already answered; one that
fails for good (another 4xx, a malformed response, or a retryable one on the last attempt) costs
its own rows only: they become dead letters naming the HTTP status, the others carry on.

Endpoints:
  http(s)://HOST:PORT             `mnistkit serve` (its /v1/models/mnist:predict route)
  http(s)://…/…:predict           any URL of the protocol, as given
  vertex://projects/P/locations/L/endpoints/E   a Vertex AI endpoint, with Application Default
                                  Credentials (MNISTKIT_AIPLATFORM_ENDPOINT overrides the API's address)

A `mnistkit serve --token` endpoint needs `Authorization: Bearer TOKEN`: the pipelines take the
token from MNISTKIT_ENDPOINT_TOKEN (endpoint_token), never from their config, which ends up in
summaries and job descriptions. It is only sent over https or to a loopback address.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from apache_beam.ml.inference.base import RemoteModelHandler

from mnistkit.model_export.model import NUM_CLASSES
from mnistkit.pipeline.inference.handler import split_by_part
from mnistkit.pipeline.inference.rest import (
    MAX_REQUEST_BYTES,
    ProtocolError,
    encode_instances,
    instance_bytes,
    parse_predictions,
)
from mnistkit.pipeline.io.google_apis import api_endpoint, is_loopback
from mnistkit.pipeline.rows import ParsedBatch, PredictionBatch, ScoredBatch, StreamBatch

__all__ = [
    "EndpointClient",
    "EndpointError",
    "RemoteBatchHandler",
    "RemoteStreamHandler",
    "TOKEN_ENV",
    "endpoint_token",
    "is_endpoint",
    "predict_url",
    "vertex_api_base",
]

_LOGGER = logging.getLogger(__name__)

_VERTEX = re.compile(r"^vertex://(projects/[^/]+/locations/([^/]+)/endpoints/[^/]+)/?$")
_SERVE_ROUTE = "/v1/models/mnist:predict"
_RETRYABLE = {408, 429, 500, 502, 503, 504}
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
TOKEN_ENV = "MNISTKIT_ENDPOINT_TOKEN"


class EndpointError(Exception):
    """An endpoint URI the kit cannot call; the message says what it expects."""


def is_endpoint(uri: str) -> bool:
    """Whether `uri` names an online endpoint rather than an exported model."""
    return uri.startswith(("http://", "https://", "vertex://"))


def vertex_api_base(location: str) -> str:
    """The Vertex AI API (v1) of a region; MNISTKIT_AIPLATFORM_ENDPOINT overrides it (io/google_apis.py)."""
    return api_endpoint("aiplatform", location)


def predict_url(endpoint: str) -> str:
    """The URL prediction requests for `endpoint` are posted to."""
    vertex = _VERTEX.match(endpoint)
    if vertex:
        return f"{vertex_api_base(vertex.group(2))}/{vertex.group(1)}:predict"
    if endpoint.startswith("vertex://"):
        raise EndpointError(f"{endpoint}: expected vertex://projects/P/locations/L/endpoints/E")
    if not endpoint.startswith(("http://", "https://")):
        raise EndpointError(f"{endpoint}: expected http(s)://HOST[:PORT][/…:predict] or vertex://…")
    if endpoint.rstrip("/").endswith(":predict"):
        return endpoint
    return endpoint.rstrip("/") + _SERVE_ROUTE


def endpoint_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token for `mnistkit serve --token` endpoints: $MNISTKIT_ENDPOINT_TOKEN, or None."""
    return (os.environ if environ is None else environ).get(TOKEN_ENV) or None


def _check_token(endpoint: str, token: str | None) -> None:
    """Refuse to send `token` where it does not belong: Vertex AI, or plain http to another machine."""
    if token is None:
        return
    if endpoint.startswith("vertex://"):
        raise EndpointError(
            f"{endpoint}: Vertex AI endpoints authenticate with Application Default Credentials, not a bearer "
            f"token; unset {TOKEN_ENV}"
        )
    host = urlsplit(endpoint).hostname or ""
    if endpoint.startswith("http://") and not is_loopback(host):
        raise EndpointError(
            f"{endpoint}: the bearer token would cross the network in the clear; use https:// (e.g. Cloud Run) "
            "or a loopback address"
        )


class _Failed(Exception):
    """One request that failed; `retryable` says whether sending it again may help."""

    def __init__(self, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


class EndpointClient:
    """Posts prediction requests to one endpoint, with an HTTP session per thread (sessions are not thread-safe)."""

    def __init__(self, endpoint: str, *, timeout_s: float = 60.0, token: str | None = None) -> None:
        _check_token(endpoint, token)
        self.endpoint = endpoint
        self.url = predict_url(endpoint)
        self._vertex = endpoint.startswith("vertex://")
        self._timeout_s = timeout_s
        self._token = token
        self._local = threading.local()

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            if self._vertex:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials, _ = google.auth.default(scopes=_SCOPES)
                session = AuthorizedSession(credentials)
            else:
                import requests

                session = requests.Session()
                if self._token:
                    session.headers["Authorization"] = f"Bearer {self._token}"
            self._local.session = session
        return session

    def predict(self, keys: np.ndarray, body: bytes) -> tuple[np.ndarray, np.ndarray, str]:
        """(probabilities, classes, model version) for one request body of the rows `keys`; raises _Failed."""
        import requests

        try:
            response = self._session().post(
                self.url, data=body, headers={"Content-Type": "application/json"}, timeout=self._timeout_s
            )
        except requests.RequestException as exc:  # refused, reset, timed out: the service may come back
            raise _Failed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            detail = f"HTTP {response.status_code}: {_error_message(response)}"
            raise _Failed(detail, retryable=response.status_code in _RETRYABLE)
        try:
            probabilities, classes = parse_predictions(response.content, keys)
        except ProtocolError as exc:
            raise _Failed(f"HTTP 200 with a bad response: {exc}", retryable=False) from exc
        version = _response_version(response)
        return probabilities, classes, version


def _error_message(response: Any) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason
    if isinstance(error, dict):  # Google APIs: {"error": {"code", "message", "status"}}
        return str(error.get("message", error))[:200]
    return str(error)[:200]


def _response_version(response: Any) -> str:
    """The model version that answered: `mnistkit serve` says so; Vertex AI names the deployed model."""
    version = response.headers.get("X-Model-Version")
    if version:
        return version
    try:
        body = response.json()
    except ValueError:
        return "remote"
    return str(body.get("model_version") or body.get("modelVersionId") or body.get("deployedModelId") or "remote")


def _requests(rows: ParsedBatch, max_rows: int, max_bytes: int) -> list[tuple[int, int, bytes]]:
    """The rows as (start, stop, body) requests of at most `max_rows` instances and `max_bytes` bytes."""
    out: list[tuple[int, int, bytes]] = []
    start, encoded, size = 0, [], 0
    for i, (key, image) in enumerate(zip(rows.keys.tolist(), rows.images, strict=True)):
        instance = instance_bytes(key, image)
        # 20 bytes: the body's own brackets, and a comma per instance.
        if encoded and (len(encoded) == max_rows or size + len(instance) + 20 > max_bytes):
            out.append((start, i, encode_instances(encoded)))
            start, encoded, size = i, [], 0
        encoded.append(instance)
        size += len(instance) + 1
    if encoded:
        out.append((start, len(rows), encode_instances(encoded)))
    return out


@dataclass
class _Attempt:
    """A batch's requests across the retries of one run_inference: what is answered, what failed for good."""

    requests: list[tuple[int, int, bytes]]
    answered: dict[int, tuple[np.ndarray, np.ndarray, str]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    tries: int = 0


class _Remote:
    """What both remote handlers share: the requests of a batch, their retries, their outcomes."""

    def __init__(self, endpoint: str, max_rows: int, max_request_bytes: int, num_retries: int) -> None:
        predict_url(endpoint)  # a malformed endpoint fails here, before the pipeline starts
        self._endpoint = endpoint
        self._max_rows = max_rows
        self._max_request_bytes = max_request_bytes
        self._num_retries = num_retries
        self._attempts: dict[int, _Attempt] = {}
        self._lock = threading.Lock()

    def score(
        self, batch: object, rows: ParsedBatch, client: EndpointClient
    ) -> tuple[np.ndarray, np.ndarray, dict[int, str], str]:
        """probabilities, classes, an error by failed row index, and the version that answered.

        Raises _Failed (for RemoteModelHandler to back off and call again with the same `batch`,
        the object its retries are told apart by) while a retryable request fails and retries are left.
        """
        with self._lock:
            attempt = self._attempts.get(id(batch))
            if attempt is None:
                attempt = self._attempts[id(batch)] = _Attempt(_requests(rows, self._max_rows, self._max_request_bytes))
            attempt.tries += 1
        retry: _Failed | None = None
        for index, (start, stop, body) in enumerate(attempt.requests):
            if index in attempt.answered or index in attempt.failed:
                continue
            try:
                attempt.answered[index] = client.predict(rows.keys[start:stop], body)
            except _Failed as exc:
                if exc.retryable and attempt.tries <= self._num_retries:
                    retry = exc
                else:
                    attempt.failed[index] = str(exc)
        if retry is not None:
            raise retry
        with self._lock:
            del self._attempts[id(batch)]
        probabilities = np.zeros((len(rows), NUM_CLASSES), np.float32)
        classes = np.zeros(len(rows), np.int64)
        errors: dict[int, str] = {}
        versions = []
        for index, (start, stop, _) in enumerate(attempt.requests):
            if index in attempt.failed:
                errors.update({i: f"{self._endpoint}: {attempt.failed[index]}" for i in range(start, stop)})
            else:
                probabilities[start:stop], classes[start:stop], version = attempt.answered[index]
                versions.append(version)
        return probabilities, classes, errors, versions[-1] if versions else ""

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the pipeline: retries in flight and the lock stay with the process.
        state = dict(self.__dict__)
        del state["_attempts"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attempts = {}
        self._lock = threading.Lock()

    def client(self, timeout_s: float, token: str | None) -> EndpointClient:
        return EndpointClient(self._endpoint, timeout_s=timeout_s, token=token)


class _RemoteHandler(RemoteModelHandler):
    """What the batch and stream remote handlers share: the endpoint, its client and its limits.

    Args:
      endpoint: see the module docstring.
      max_rows: most instances per request (1: a request per row).
      max_request_bytes: most bytes per request body.
      num_retries: retries of a retryable failure before its rows are dead-lettered.
      throttle_delay_secs: how long the client-side throttler waits when the service refuses.
      token: bearer token of a `mnistkit serve --token` endpoint (https or loopback only).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_rows: int,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        num_retries: int = 5,
        throttle_delay_secs: int = 5,
        timeout_s: float = 60.0,
        token: str | None = None,
    ) -> None:
        super().__init__(
            namespace=_NAMESPACE,
            num_retries=num_retries,
            throttle_delay_secs=throttle_delay_secs,
            retry_filter=_retryable,
        )
        _check_token(endpoint, token)
        self._remote = _Remote(endpoint, max_rows, max_request_bytes, num_retries)
        self._timeout_s = timeout_s
        self._token = token

    def create_client(self) -> EndpointClient:
        return self._remote.client(self._timeout_s, self._token)

    def get_metrics_namespace(self) -> str:
        return _NAMESPACE


_NAMESPACE = "mnistkit_RemoteInference"


class RemoteBatchHandler(_RemoteHandler):
    """The batch pipeline's remote handler: ParsedBatches in, one PredictionBatch per ParsedBatch out.

    `min_batch_size`/`max_batch_size` are the rows RunInference gathers per call (as
    SavedModelHandler); the other arguments are _RemoteHandler's.
    """

    def __init__(
        self, endpoint: str, *, min_batch_size: int = 1, max_batch_size: int = 256, max_rows: int = 256, **kwargs: Any
    ) -> None:
        super().__init__(endpoint, max_rows=max_rows, **kwargs)
        self._batching_kwargs = {
            "min_batch_size": min_batch_size,
            "max_batch_size": max_batch_size,
            "element_size_fn": len,
        }

    def request(
        self,
        batch: Sequence[ParsedBatch],
        model: EndpointClient,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionBatch]:
        rows = ParsedBatch.concat(batch)
        probabilities, classes, errors, _ = self._remote.score(batch, rows, model)
        return split_by_part(batch, rows, probabilities, classes, errors)

    def get_num_bytes(self, batch: Sequence[ParsedBatch]) -> int:
        return sum(part.nbytes for part in batch)


class RemoteStreamHandler(_RemoteHandler):
    """The stream's remote handler: one micro-batch per call (batched before RunInference), as
    StreamModelHandler; rows of failed requests carry their error into the stream's dead letters."""

    def __init__(self, endpoint: str, *, max_rows: int = 100, **kwargs: Any) -> None:
        super().__init__(endpoint, max_rows=max_rows, **kwargs)

    def should_skip_batching(self) -> bool:
        return True

    def request(
        self,
        batch: StreamBatch,
        model: EndpointClient,
        inference_args: dict[str, Any] | None = None,
    ) -> list[ScoredBatch]:
        probabilities, classes, errors, version = self._remote.score(batch, batch.rows, model)
        return [ScoredBatch(batch, probabilities, classes, errors, version or "remote", time.time())]

    def get_num_bytes(self, batch: StreamBatch) -> int:
        return batch.rows.nbytes


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, _Failed) and exc.retryable
