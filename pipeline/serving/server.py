"""`mnistkit serve`: an HTTP prediction server speaking the Vertex AI / TensorFlow Serving REST protocol.

    POST /v1/models/mnist:predict   {"instances": [...]} → {"predictions": [...]}  (inference/rest.py)
    GET  /v1/models/mnist           the version served, its model.json and the signature
    GET  /health                    200 once the model is loaded
    GET  /metrics                   Prometheus text format
    GET  /                          the digit-drawing page (page/index.html)

On Vertex AI the container is told its routes and port through AIP_PREDICT_ROUTE,
AIP_HEALTH_ROUTE and AIP_HTTP_PORT; those routes are served as well as the ones above.

The stack is Starlette on uvicorn. Concurrent requests share model calls (batching.py); the
model follows its export dir like a stream's does (inference/hot_swap.LatestModel), with the
checks made by a thread of their own so a reload never holds up a request. What a client can
do wrong gets a 4xx with `{"error": "..."}` naming it: 400 for a body that breaks the protocol,
401 without the bearer token (when one is set), 408 for a body that trickles in slower than
`body_timeout_s`, 413 above `max_body_bytes` (1.5 MB, Vertex AI's own limit); overload is a 503
with Retry-After, from the batcher's bounded queue or uvicorn's connection limit.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.model_export.export import SIGNATURE_INPUTS, SIGNATURE_NAME, SIGNATURE_OUTPUTS
from mnistkit.pipeline.inference.handler import predict_rows
from mnistkit.pipeline.inference.hot_swap import LatestModel
from mnistkit.pipeline.inference.rest import MAX_REQUEST_BYTES, ProtocolError, encode_predictions, parse_instances
from mnistkit.pipeline.inference.savedmodel import ModelInfo, validate_model
from mnistkit.pipeline.rows import ParsedBatch
from mnistkit.pipeline.serving.batching import MicroBatcher, Overloaded

__all__ = [
    "MODEL_NAME",
    "BackgroundServer",
    "ServeConfig",
    "create_app",
    "load_serving_model",
    "run_server",
    "vertex_settings",
]

_LOGGER = logging.getLogger(__name__)

MODEL_NAME = "mnist"
PREDICT_ROUTE = f"/v1/models/{MODEL_NAME}:predict"
METADATA_ROUTE = f"/v1/models/{MODEL_NAME}"
HEALTH_ROUTE = "/health"
PAGE = Path(__file__).parent / "page" / "index.html"


@dataclass(frozen=True)
class ServeConfig:
    """Everything `mnistkit serve` needs; see `mnistkit serve --help`."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queued_rows: int = 4096
    max_body_bytes: int = MAX_REQUEST_BYTES
    body_timeout_s: float = 10.0
    model_check_seconds: float = 10.0
    # Connections uvicorn serves at once; more get a 503 straight away.
    max_connections: int = 512
    token: str | None = None
    # Extra routes (Vertex AI's AIP_PREDICT_ROUTE / AIP_HEALTH_ROUTE).
    predict_routes: tuple[str, ...] = field(default_factory=tuple)
    health_routes: tuple[str, ...] = field(default_factory=tuple)


def vertex_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ServeConfig fields a Vertex AI custom container is given in its environment."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    if environ.get("AIP_PREDICT_ROUTE"):
        settings["predict_routes"] = (environ["AIP_PREDICT_ROUTE"],)
    if environ.get("AIP_HEALTH_ROUTE"):
        settings["health_routes"] = (environ["AIP_HEALTH_ROUTE"],)
    if environ.get("AIP_HTTP_PORT"):
        settings["port"] = int(environ["AIP_HTTP_PORT"])
    return settings


def load_serving_model(uri: str, check_seconds: float) -> LatestModel:
    """The model `serve` uses: `current()` gives a callable (keys, images) → (probabilities, classes)
    and its version, following the export dir. The one place to pick another inference runtime."""
    return LatestModel(uri, check_seconds)


class _Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app, so tests can run several)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mnistkit_serve_requests", "HTTP requests by route and status", ["route", "code"], registry=self.registry
        )
        self.rows = Counter("mnistkit_serve_rows", "Rows predicted", registry=self.registry)
        self.latency = Histogram(
            "mnistkit_serve_request_seconds",
            "Time from a prediction request's arrival to its response",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "mnistkit_serve_batch_rows",
            "Rows per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.batch_seconds = Histogram("mnistkit_serve_batch_seconds", "Model call time", registry=self.registry)
        self.queued = Gauge("mnistkit_serve_queued_rows", "Rows waiting for a model call", registry=self.registry)
        self.version = Gauge("mnistkit_serve_model_version", "Model version served (1 = current)", ["version"],
                             registry=self.registry)  # fmt: skip

    def observe_batch(self, rows: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_seconds.observe(seconds)

    def serving(self, version: str) -> None:
        self.version.clear()
        self.version.labels(version).set(1)


class _RequestError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class _Service:
    """The state behind the routes: the model, the batcher, the metrics."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = _Metrics()
        self.model: LatestModel | None = None
        self.batcher: MicroBatcher | None = None
        self._info: dict[str, ModelInfo] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    async def start(self) -> None:
        config = self.config
        first = validate_model(config.model)
        self._info[first.version] = first
        loop = asyncio.get_running_loop()
        # Loading TensorFlow and the model takes seconds: off the event loop.
        self.model = await loop.run_in_executor(None, load_serving_model, config.model, config.model_check_seconds)
        self.metrics.serving(self.model.version)
        self.batcher = MicroBatcher(
            self._predict,
            max_batch=config.max_batch,
            max_wait_s=config.max_wait_ms / 1000,
            max_queued_rows=config.max_queued_rows,
            on_batch=self.metrics.observe_batch,
        )
        self.batcher.start()
        if config.model_check_seconds > 0:
            self._watcher = threading.Thread(target=self._watch, name="mnistkit-model-watch", daemon=True)
            self._watcher.start()
        _LOGGER.warning("Serving model %s (version %s)", config.model, self.model.version)

    async def stop(self) -> None:
        self._stop.set()
        if self.batcher is not None:
            await self.batcher.stop()
        if self._watcher is not None:
            self._watcher.join()

    def _watch(self) -> None:
        # Checking more often than LatestModel's period makes this thread, not a model call,
        # the one that finds a due check and loads the new version.
        period = self.config.model_check_seconds / 4
        while not self._stop.wait(period):
            _, version = self.model.current()
            self.metrics.serving(version)

    def _predict(self, keys: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, str], str]:
        serving, version = self.model.current()
        rows = ParsedBatch(keys, images, [PREDICT_ROUTE] * len(keys))
        probabilities, classes, errors = predict_rows(serving, rows, self.config.max_batch)
        return probabilities, classes, errors, version

    def info(self) -> ModelInfo:
        version = self.model.version
        if version not in self._info:
            pinned = next(iter(self._info.values()))
            base = self.config.model.rstrip("/")
            uri = pinned.uri if pinned.uri == base else f"{base}/{version}"
            self._info[version] = validate_model(uri)
        return self._info[version]

    def authorize(self, headers: Any) -> None:
        token = self.config.token
        if token is None:
            return
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise _RequestError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    async def read_body(self, request: Any) -> bytes:
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise _RequestError(413, f"the body is over the limit of {limit:,} bytes ({length} bytes)")
        chunks: list[bytes] = []
        size = 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _RequestError(413, f"the body is over the limit of {limit:,} bytes")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), self.config.body_timeout_s)
        except TimeoutError as exc:
            raise _RequestError(408, f"the body did not arrive within {self.config.body_timeout_s:g} s") from exc
        return b"".join(chunks)

    async def predict(self, request: Any) -> tuple[bytes, str]:
        self.authorize(request.headers)
        body = await self.read_body(request)
        try:
            keys, images = parse_instances(body)
        except ProtocolError as exc:
            raise _RequestError(400, str(exc)) from exc
        self.metrics.queued.set(self.batcher.queued_rows)
        try:
            result = await self.batcher.submit(keys, images)
        except Overloaded as exc:
            raise _RequestError(503, f"overloaded: {exc}", {"Retry-After": "1"}) from exc
        if result.errors:
            i, why = next(iter(sorted(result.errors.items())))
            raise _RequestError(500, f"the model failed on instance {i} (key {keys[i]}): {why}")
        self.metrics.rows.inc(len(keys))
        body = encode_predictions(keys, result.probabilities, result.classes, model_version=result.model_version)
        return body, result.model_version


def create_app(config: ServeConfig) -> Any:
    """The ASGI app serving `config.model` (a Starlette app; uvicorn runs it)."""
    from contextlib import asynccontextmanager

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    service = _Service(config)

    def error(route: str, exc: _RequestError) -> JSONResponse:
        service.metrics.requests.labels(route, str(exc.status)).inc()
        return JSONResponse({"error": str(exc)}, exc.status, headers=exc.headers)

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body, version = await service.predict(request)
        except _RequestError as exc:
            return error("predict", exc)
        service.metrics.requests.labels("predict", "200").inc()
        service.metrics.latency.observe(time.perf_counter() - started)
        return Response(body, media_type="application/json", headers={"X-Model-Version": version})

    async def metadata(request: Request) -> Response:
        try:
            service.authorize(request.headers)
        except _RequestError as exc:
            return error("metadata", exc)
        info = await asyncio.get_running_loop().run_in_executor(None, service.info)
        service.metrics.requests.labels("metadata", "200").inc()

        def specs(signature: dict) -> dict:
            return {name: {"dtype": dtype, "shape": shape} for name, (dtype, shape) in signature.items()}

        return JSONResponse(
            {
                "model_version_status": [{"version": info.version, "state": "AVAILABLE"}],
                "model": {"name": MODEL_NAME, "uri": info.uri, "metadata": info.metadata},
                "signature": {"name": SIGNATURE_NAME, "inputs": specs(SIGNATURE_INPUTS),
                              "outputs": specs(SIGNATURE_OUTPUTS)},
                "batching": {"max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms},
                "max_body_bytes": config.max_body_bytes,
            }
        )  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": service.model.version})

    async def metrics(request: Request) -> Response:
        service.metrics.queued.set(service.batcher.queued_rows)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)

    @asynccontextmanager
    async def lifespan(app: Any):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = [Route(path, predict, methods=["POST"]) for path in (PREDICT_ROUTE, *config.predict_routes)]
    routes += [Route(path, health, methods=["GET"]) for path in (HEALTH_ROUTE, *config.health_routes)]
    routes += [
        Route(METADATA_ROUTE, metadata, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/", page, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.service = service
    return app


def _uvicorn_server(config: ServeConfig) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            limit_concurrency=config.max_connections,
            timeout_keep_alive=5,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )


def run_server(config: ServeConfig) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM, which finish the requests in flight).

    Raises ModelError before anything listens when `config.model` holds no servable export.
    """
    validate_model(config.model)
    server = _uvicorn_server(config)
    server.run()
    if not server.started:
        raise RuntimeError(f"the server did not start on {config.host}:{config.port}; see the log above")


class BackgroundServer:
    """`serve` in a thread of this process, for tests and benchmarks: `with BackgroundServer(c) as s: s.url`."""

    def __init__(self, config: ServeConfig, start_timeout_s: float = 120.0) -> None:
        self._server = _uvicorn_server(config)
        self._thread = threading.Thread(target=self._server.run, name="mnistkit-serve", daemon=True)
        self._start_timeout_s = start_timeout_s
        self.url = ""

    @property
    def app(self) -> Any:
        return self._server.config.app

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start; see the log")
            time.sleep(0.05)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
