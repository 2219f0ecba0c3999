"""`mnistkit serve`, `mnistkit endpoint deploy|predict|undeploy` and `mnistkit batch-predict`:
thin Click layers over pipeline.serving.server and pipeline.cloud.vertex."""

from __future__ import annotations

from typing import Any

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import env_epilog, settings_option

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


def _api(location: str, dry_run: bool, poll_seconds: float = 10.0) -> Any:
    from mnistkit.cli.output import echo_request
    from mnistkit.pipeline.cloud.vertex import VertexApi

    return VertexApi(location, dry_run=dry_run, describe=echo_request, poll_seconds=poll_seconds)


def _endpoint(endpoint: str | None, settings: tuple[str, ...]) -> tuple[str, Any]:
    """The endpoint's resource name (--endpoint, else the vertex_endpoint setting) and the config."""
    from mnistkit.cli.options import resolve_config
    from mnistkit.pipeline.cloud.vertex import endpoint_name

    config = resolve_config(settings)
    if endpoint is None:
        config.require("vertex_endpoint")
        endpoint = config.vertex_endpoint
    return endpoint_name(endpoint), config


_endpoint_option = click.option(
    "--endpoint",
    metavar="NAME",
    help="projects/P/locations/L/endpoints/E or vertex://…; default: the vertex_endpoint setting (Terraform output).",
)
_dry_run_option = click.option("--dry-run", is_flag=True, help="Print each Vertex AI request instead of sending it.")
_poll_option = click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    help="How often a running operation or job is checked.",
)


@click.group()
def endpoint() -> None:
    """Vertex AI endpoints: deploy an export, call it, undeploy it (Terraform creates the endpoint)."""


@endpoint.command(context_settings={"show_default": True})
@click.option("--model", required=True, metavar="GS_URI", help="Export dir on GCS (newest version) or one version dir.")
@_endpoint_option
@click.option(
    "--container",
    type=click.Choice(["kit", "tensorflow"]),
    default="kit",
    help="The kit's serving image (mnistkit serve) or Google's prebuilt TensorFlow serving image.",
)
@click.option("--serving-image", help="The kit's serving image; default: the serving_image setting.")
@click.option("--display-name", default="mnistkit", help="Name of the model and the deployment.")
@click.option("--machine-type", default="n1-standard-2", help="Machine type of each replica.")
@click.option("--min-replicas", type=click.IntRange(min=1), default=1, help="Replicas kept running.")
@click.option("--max-replicas", type=click.IntRange(min=1), default=1, help="Autoscaling ceiling.")
@click.option("--accelerator", metavar="TYPE", help="A GPU per replica, e.g. NVIDIA_TESLA_T4 or NVIDIA_L4.")
@click.option("--accelerator-count", type=click.IntRange(min=1), default=1, help="GPUs per replica.")
@click.option(
    "--service-account",
    metavar="EMAIL",
    help="Account the model runs as (it reads the model bucket); default: the serving_service_account setting, "
    "else Vertex AI's own service agent.",
)
@_dry_run_option
@_poll_option
@settings_option
@user_errors
def deploy(
    model: str,
    endpoint: str | None,
    container: str,
    serving_image: str | None,
    display_name: str,
    machine_type: str,
    min_replicas: int,
    max_replicas: int,
    accelerator: str | None,
    accelerator_count: int,
    service_account: str | None,
    dry_run: bool,
    poll_seconds: float,
    settings: tuple[str, ...],
) -> None:
    """Upload an export to the Model Registry and deploy it to the endpoint, with all its traffic."""
    from mnistkit.pipeline.cloud.vertex import DeployConfig, deploy_model, upload_model, version_uri

    if min_replicas > max_replicas:
        raise click.BadParameter(f"exceeds --max-replicas {max_replicas}", param_hint="--min-replicas")
    name, config = _endpoint(endpoint, settings)
    config.require("project_id")
    deploy_config = DeployConfig(
        endpoint=name,
        artifact_uri=version_uri(model),
        display_name=display_name,
        container=container,
        serving_image=serving_image or config.serving_image,
        machine_type=machine_type,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        accelerator_type=accelerator,
        accelerator_count=accelerator_count if accelerator else 0,
        service_account=service_account or config.serving_service_account,
    )
    api = _api(name.split("/")[3], dry_run, poll_seconds)
    uploaded = upload_model(api, deploy_config, config.project_id, click.echo)
    click.echo(f"Model: {uploaded}")
    deployed = deploy_model(api, deploy_config, uploaded, click.echo)
    click.echo(f"Deployed model {deployed} on {name}")
    click.echo(f"Call it: mnistkit endpoint predict --endpoint {name} --input ROWS, or --endpoint vertex://{name}")


@endpoint.command(name="predict", context_settings={"show_default": True})
@_endpoint_option
@click.option("--input", "input_uri", required=True, metavar="URI", help="Rows in any format `predict` reads.")
@click.option("--limit", type=click.IntRange(1, 200), default=5, help="Rows to send (one request).")
@_dry_run_option
@settings_option
@user_errors
def endpoint_predict(
    endpoint: str | None, input_uri: str, limit: int, dry_run: bool, settings: tuple[str, ...]
) -> None:
    """Send the first rows of a file to the endpoint and print the classes."""
    from collections import Counter

    import numpy as np

    from mnistkit.cli.output import echo_predictions
    from mnistkit.model_export.model import to_model_input
    from mnistkit.pipeline.cloud.vertex import online_predict
    from mnistkit.pipeline.io.formats import detect_format, keyed_rows

    name, _ = _endpoint(endpoint, settings)
    chunks = list(keyed_rows(input_uri, detect_format(input_uri), Counter(), limit))
    keys = np.concatenate([k for k, _ in chunks])
    images = to_model_input(np.concatenate([p for _, p in chunks]))
    probabilities, classes, deployed = online_predict(_api(name.split("/")[3], dry_run), name, keys, images)
    if not dry_run:
        echo_predictions(keys.tolist(), probabilities.tolist(), classes.tolist())
        click.echo(f"Answered by deployed model {deployed}")


@endpoint.command(context_settings={"show_default": True})
@_endpoint_option
@click.option("--deployed-model-id", help="Undeploy this one only; default: every model on the endpoint.")
@_dry_run_option
@_poll_option
@settings_option
@user_errors
def undeploy(
    endpoint: str | None, deployed_model_id: str | None, dry_run: bool, poll_seconds: float, settings: tuple[str, ...]
) -> None:
    """Undeploy models from the endpoint (replicas stop billing; the endpoint stays, Terraform owns it)."""
    from mnistkit.pipeline.cloud.vertex import undeploy_models

    name, _ = _endpoint(endpoint, settings)
    ids = undeploy_models(_api(name.split("/")[3], dry_run, poll_seconds), name, click.echo, deployed_model_id)
    if not dry_run:
        click.echo(f"Undeployed {', '.join(ids) or 'nothing (no model was deployed)'} from {name}")


@click.command(name="batch-predict", context_settings={"show_default": True})
@click.option(
    "--model",
    required=True,
    metavar="NAME|GS_URI",
    help="A Model Registry model (projects/P/locations/L/models/M, as `endpoint deploy` prints it), or an "
    "export on GCS, uploaded first.",
)
@click.option("--input", "input_uri", required=True, metavar="bq://|gs://", help="bq://project.dataset.table, or "
              "gs:// JSON lines of instances.")  # fmt: skip
@click.option("--output", required=True, metavar="bq://|gs://", help="bq://project[.dataset], or a gs:// prefix.")
@click.option("--container", type=click.Choice(["kit", "tensorflow"]), default="kit", help="When uploading.")
@click.option("--serving-image", help="When uploading with --container kit; default: the serving_image setting.")
@click.option("--machine-type", default="n1-standard-4", help="Machine type of the job's replicas.")
@click.option("--max-replicas", type=click.IntRange(min=1), default=4, help="Most replicas the job may use.")
@_dry_run_option
@_poll_option
@settings_option
@user_errors
def batch_predict(
    model: str,
    input_uri: str,
    output: str,
    container: str,
    serving_image: str | None,
    machine_type: str,
    max_replicas: int,
    dry_run: bool,
    poll_seconds: float,
    settings: tuple[str, ...],
) -> None:
    """Run a Vertex AI batch prediction job and wait for it, showing its state as it goes."""
    from mnistkit.cli.options import resolve_config
    from mnistkit.pipeline.cloud.vertex import DeployConfig, run_batch_prediction, upload_model, version_uri

    config = resolve_config(settings)
    config.require("project_id")
    api = _api(config.region, dry_run, poll_seconds)
    if model.startswith("gs://"):
        upload = DeployConfig(
            endpoint="",
            artifact_uri=version_uri(model),
            container=container,
            serving_image=serving_image or config.serving_image,
        )
        model = upload_model(api, upload, config.project_id, click.echo)
        click.echo(f"Model: {model}")
    job = run_batch_prediction(
        api,
        project=config.project_id,
        model=model,
        input_uri=input_uri,
        output_uri=output,
        machine_type=machine_type,
        max_replicas=max_replicas,
        progress=click.echo,
    )
    if not dry_run:
        click.echo(f"Batch prediction job {job.name} {job.state}; predictions: {job.output}")


COMMANDS = [serve, endpoint, batch_predict]
