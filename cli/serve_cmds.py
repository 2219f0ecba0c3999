"""`mnistkit serve`: a thin Click layer over pipeline.serving.server."""

from __future__ import annotations

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import env_epilog

__all__ = ["COMMANDS"]

_ENV = env_epilog("MNISTKIT_SERVE_TOKEN=s3cret")


@click.command(context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--model",
    required=True,
    metavar="URI",
    show_envvar=True,
    help="Export dir (local or gs://): its newest version is served, and a newer export is picked up "
    "without a restart. A version dir pins that version.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_envvar=True,
    help="Address to listen on; 0.0.0.0 for every interface (a container, or other machines).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    show_envvar=True,
    help="Port to listen on. Default: $AIP_HTTP_PORT (set by Vertex AI), else 8080.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=64,
    show_envvar=True,
    help="Most rows one model call joins from concurrent requests.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=5.0,
    show_envvar=True,
    help="Longest a request waits for others to share its model call.",
)
@click.option(
    "--max-queued-rows",
    type=click.IntRange(min=1),
    default=4096,
    show_envvar=True,
    help="Rows allowed to wait for the model; requests beyond get 503 (retry later).",
)
@click.option(
    "--model-check-seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_envvar=True,
    help="How often the export dir is checked for a newer version; 0 never.",
)
@click.option(
    "--token",
    default=None,
    show_envvar=True,
    help="Require `Authorization: Bearer TOKEN` on predictions and metadata (the page takes it as /#token=TOKEN).",
)
@user_errors
def serve(
    model: str,
    host: str,
    port: int | None,
    max_batch: int,
    max_wait_ms: float,
    max_queued_rows: int,
    model_check_seconds: float,
    token: str | None,
) -> None:
    """Serve online predictions over HTTP, with a page to draw digits on.

    Speaks the Vertex AI / TensorFlow Serving REST protocol:

    \b
      POST /v1/models/mnist:predict  {"instances": [{"key": 1, "image": [784 values in 0..1]}]}
      GET  /v1/models/mnist          version and signature
      GET  /health, /metrics         health check, Prometheus metrics
      GET  /                         draw a digit, see the class and the probabilities
    On Vertex AI it also serves $AIP_PREDICT_ROUTE and $AIP_HEALTH_ROUTE on $AIP_HTTP_PORT.
    """
    from mnistkit.pipeline.serving.server import ServeConfig, run_server, vertex_settings

    settings = vertex_settings()
    if port is not None:
        settings["port"] = port
    if max_queued_rows < max_batch:
        raise click.BadParameter(f"must be at least --max-batch ({max_batch})", param_hint="--max-queued-rows")
    config = ServeConfig(
        model=model,
        host=host,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queued_rows=max_queued_rows,
        model_check_seconds=model_check_seconds,
        token=token,
        **settings,
    )
    click.echo(f"Serving {model} on http://{host}:{config.port}/ (Ctrl-C stops)")
    run_server(config)


COMMANDS = [serve]
