"""The cloud settings handoff: Terraform outputs → a cached config file → env vars → flags.

`terraform -chdir=infra output -json` is slow (it reads remote state) and needs the provider
installed, so its outputs are read once and cached in a small JSON file (`.mnistkit/config.json`,
or `$MNISTKIT_CONFIG`). The file has two parts: `terraform` (the outputs, rewritten by
`mnistkit config refresh`) and `settings` (values a user pins by hand; refresh keeps them).
Each setting resolves from the first of: a command-line flag, `MNISTKIT_<NAME>`, the file's
`settings`, the cached Terraform output, a default — and remembers which one it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "CloudConfig",
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_INFRA_DIR",
    "ENV_PREFIX",
    "SETTING_NAMES",
    "config_path",
    "describe",
    "env_name",
    "load_config",
    "read_config_file",
    "refresh_config",
    "setting_fields",
    "terraform_output",
    "write_config_file",
]

CONFIG_ENV = "MNISTKIT_CONFIG"
DEFAULT_CONFIG_PATH = Path(".mnistkit/config.json")
DEFAULT_INFRA_DIR = Path("infra")
ENV_PREFIX = "MNISTKIT_"
_UNSET = ("none", "")


class ConfigError(Exception):
    """A setting is missing or malformed; the message says how to set it."""


def _setting(help: str, output: str | None = None, default: Any = None, kind: type = str) -> Any:
    """A CloudConfig field; `output` is the Terraform output it comes from ("gpu.zone" = a key of one)."""
    return field(default=default, metadata={"help": help, "output": output, "kind": kind})


@dataclass(frozen=True)
class CloudConfig:
    """Everything a cloud command needs, with `sources[name]` saying where each value came from."""

    project_id: str | None = _setting("GCP project", "project_id")
    region: str = _setting("Dataflow region", "region", "us-central1")
    model_bucket: str | None = _setting("gs:// bucket for exported models", "model_bucket")
    data_bucket: str | None = _setting("gs:// bucket for inputs and outputs", "data_bucket")
    input_location: str | None = _setting("gs:// folder `stage` uploads inputs to (workers read it)", "input_location")
    output_location: str | None = _setting(
        "gs:// folder of the data bucket workers may write (outputs, dead letters)", "output_location"
    )
    temp_location: str | None = _setting("Dataflow --temp_location", "temp_location")
    staging_location: str | None = _setting("Dataflow --staging_location", "staging_location")
    bigquery_dataset: str | None = _setting("BigQuery dataset (project.dataset)", "bigquery_dataset")
    input_table: str | None = _setting("BigQuery input table, key INTEGER + image STRING", "input_table")
    input_bytes_table: str | None = _setting("BigQuery input table, key + image BYTES", "input_bytes_table")
    predictions_table: str | None = _setting("BigQuery predictions table", "predictions_table")
    stream_predictions_table: str | None = _setting(
        "BigQuery table of stream predictions (latency columns)", "stream_predictions_table"
    )
    pubsub_input_topic: str | None = _setting("Topic simulate-stream publishes to", "pubsub_input_topic")
    pubsub_input_subscription: str | None = _setting(
        "Subscription a stream reads (its default --input on Dataflow)", "pubsub_input_subscription"
    )
    pubsub_dead_letter_topic: str | None = _setting("Topic of undeliverable input messages", "pubsub_dead_letter_topic")
    pubsub_dead_letter_subscription: str | None = _setting(
        "Subscription holding undeliverable input messages", "pubsub_dead_letter_subscription"
    )
    bigquery_read_method: str = _setting("DIRECT_READ or EXPORT", "bigquery_read_method", "DIRECT_READ")
    worker_service_account: str | None = _setting("Dataflow worker service account", "worker_service_account")
    training_service_account: str | None = _setting("Vertex AI training service account", "training_service_account")
    subnetwork: str | None = _setting("Worker subnetwork (self link)", "subnetwork")
    # Kept as a setting so that an override (--set, env, config file) is refused by the launch
    # guard with a reason instead of being an unknown name: launches always pass --no_use_public_ips.
    use_public_ips: bool = _setting("Always false: launches refuse public worker IPs", "use_public_ips", False, bool)
    dataflow_kms_key: str | None = _setting("Cloud KMS key for --dataflow_kms_key (CMEK)", "dataflow_kms_key")
    training_service_account: str | None = _setting(
        "Training service account, the one that publishes models", "training_service_account"
    )
    artifact_registry_repo: str | None = _setting("Docker repository for worker images", "artifact_registry_repo")
    worker_image: str | None = _setting("Worker container image (--sdk_container_image)", "worker_image")
    vertex_endpoint: str | None = _setting("Vertex AI endpoint (projects/P/locations/L/endpoints/E)", "vertex_endpoint")
    serving_image: str | None = _setting("Serving container image (mnistkit serve) for Vertex AI and Cloud Run",
                                         "serving_image")  # fmt: skip
    serving_service_account: str | None = _setting(
        "Service account the model on the Vertex AI endpoint runs as", "serving_service_account"
    )
    worker_base_digest: str | None = _setting("sha256:… digest of the worker image's Beam base (image build)")
    cloudbuild_service_account: str | None = _setting(
        "Service account Cloud Build runs image builds as", "cloudbuild_service_account"
    )
    build_source_location: str | None = _setting(
        "gs:// folder for Cloud Build contexts (--gcs-source-staging-dir)", "build_source_location"
    )
    machine_type: str | None = _setting("Worker machine type", "worker_machine_type")
    max_workers: int = _setting("Autoscaling ceiling", "max_workers", 4, int)
    num_workers: int | None = _setting("Workers at start (Dataflow decides when unset)", kind=int)
    autoscaling_algorithm: str = _setting("THROUGHPUT_BASED or NONE", None, "THROUGHPUT_BASED")
    gpu: str | None = _setting("GPUs per worker as TYPE:COUNT (e.g. t4:1), none for CPU", "gpu")
    worker_zone: str | None = _setting("Pin workers to one zone", "gpu.zone")
    model_uri: str | None = _setting("Model export dir on GCS (default: <model_bucket>/mnist)")
    labels: str = _setting("Job labels, k=v,k=v", None, "app=mnistkit")
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, metadata={"internal": True})
    # The cached Terraform outputs as deployed, whatever overrides the settings above: what the
    # launch guards compare an override with (e.g. a CMEK deployment whose key was set to none).
    deployed: Mapping[str, Any] = field(default_factory=dict, compare=False, metadata={"internal": True})

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every missing setting and how to provide it."""
        missing = [name for name in names if getattr(self, name) in (None, "")]
        if missing:
            hints = ", ".join(f"--set {n}=… or {env_name(n)}" for n in missing)
            raise ConfigError(
                f"not configured: {', '.join(missing)}. Deploy infra/ and run `mnistkit config refresh`, "
                f"or set them: {hints}"
            )

    def label_dict(self) -> dict[str, str]:
        pairs = [item.split("=", 1) for item in self.labels.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError(f"labels must look like k=v,k=v, got {self.labels!r}")
        return {k.strip(): v.strip() for k, v in pairs}


def setting_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(CloudConfig) if not f.metadata.get("internal")]


SETTING_NAMES = tuple(f.name for f in setting_fields())


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def config_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"terraform": None, "settings": {}}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    unknown = set(data.get("settings") or {}) - set(SETTING_NAMES)
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)}; known: {', '.join(SETTING_NAMES)}")
    return {"terraform": data.get("terraform"), "settings": data.get("settings") or {}}


def terraform_output(infra_dir: Path = DEFAULT_INFRA_DIR, terraform: str = "terraform") -> dict[str, Any]:
    """`terraform -chdir=INFRA output -json`, flattened to {name: value}."""
    if shutil.which(terraform) is None:
        raise ConfigError(f"`{terraform}` is not on PATH; install Terraform ≥ 1.9 or set values by hand")
    proc = subprocess.run(
        [terraform, f"-chdir={infra_dir}", "output", "-json"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ConfigError(f"terraform output failed in {infra_dir}: {proc.stderr.strip()[-2000:]}")
    outputs = json.loads(proc.stdout or "{}")
    if not outputs:
        raise ConfigError(f"{infra_dir} has no outputs: run `make deploy` first")
    return {name: entry["value"] for name, entry in outputs.items()}


def refresh_config(path: Path | None = None, infra_dir: Path = DEFAULT_INFRA_DIR, terraform: str = "terraform") -> Path:
    """Re-read the Terraform outputs into the config file, keeping the user's pinned settings."""
    path = config_path(path)
    current = read_config_file(path)
    outputs = terraform_output(infra_dir, terraform)
    write_config_file(path, outputs, current["settings"], source=str(infra_dir.resolve()))
    return path


def write_config_file(path: Path, outputs: Mapping[str, Any], settings: Mapping[str, Any], source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "terraform": {
            "infra_dir": source,
            "read_at": datetime.now(UTC).isoformat(),
            "outputs": dict(outputs),
        },
        "settings": dict(settings),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _from_outputs(outputs: Mapping[str, Any], output: str) -> Any:
    name, _, key = output.partition(".")
    value = outputs.get(name)
    if key:
        return value.get(key) if isinstance(value, Mapping) else None
    if name == "gpu" and isinstance(value, Mapping):
        # The gpu output is an object; the CLI speaks TYPE:COUNT like --gpu.
        return f"{value['gpu_type']}:{value['gpu_count']}"
    return value


def _coerce(name: str, kind: type, value: Any) -> Any:
    """Env vars and flags are strings; the config file and Terraform give JSON types."""
    if value is None or not isinstance(value, str):
        return value
    if kind is int:
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from exc
    if kind is bool:
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return lowered in ("true", "1", "yes")
    return value


def load_config(
    flags: Mapping[str, tuple[Any, str]] | None = None,
    *,
    path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    infra_dir: Path = DEFAULT_INFRA_DIR,
    terraform: str = "terraform",
) -> CloudConfig:
    """Resolve every setting. `flags` maps a setting to (value, how it was given, e.g. "flag --gpu").

    Without cached Terraform outputs, a deployed `infra/` (one with `.terraform/`) is read once and
    cached, so the first cloud command after `make deploy` needs no extra step.
    """
    flags = {k: v for k, v in (flags or {}).items() if v[0] is not None}
    unknown = set(flags) - set(SETTING_NAMES)
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTING_NAMES)}")
    environ = os.environ if environ is None else environ
    file_path = config_path(path)
    document = read_config_file(file_path)
    if document["terraform"] is None and (infra_dir / ".terraform").is_dir() and shutil.which(terraform):
        try:
            refresh_config(file_path, infra_dir, terraform)
            document = read_config_file(file_path)
        except ConfigError:
            pass  # not applied yet, or no state access: the defaults and flags still work
    outputs = (document["terraform"] or {}).get("outputs") or {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in setting_fields():
        candidates = [
            flags.get(f.name, (None, "")),
            (environ.get(env_name(f.name)) or None, f"env {env_name(f.name)}"),
            (document["settings"].get(f.name), f"config file {file_path}"),
            (_from_outputs(outputs, f.metadata["output"]) if f.metadata["output"] else None,
             f"terraform output {f.metadata['output']}"),
        ]  # fmt: skip
        value, source = next(((v, s) for v, s in candidates if v is not None), (f.default, "default"))
        if isinstance(value, str) and value.strip().lower() in _UNSET:
            # How a flag or env var takes back a value Terraform set (e.g. --gpu none for CPUs).
            value, source = f.default, f"{source} (none: default)"
        values[f.name] = _coerce(f.name, f.metadata["kind"], value)
        sources[f.name] = source
    # Where infra/ puts these; a config cached before it published them still works.
    for name, base, leaf in (
        ("model_uri", "model_bucket", "mnist"),
        ("input_location", "data_bucket", "inputs"),
        ("output_location", "data_bucket", "outputs"),
    ):
        if values[name] is None and values[base]:
            values[name] = f"{values[base].rstrip('/')}/{leaf}"
            sources[name] = f"default (<{base}>/{leaf})"
    return CloudConfig(**values, sources=sources, deployed=dict(outputs))


def describe(config: CloudConfig) -> list[tuple[str, str, str]]:
    """(name, value, source) rows for `mnistkit config show`."""
    rows = []
    for f in setting_fields():
        value = getattr(config, f.name)
        rows.append((f.name, "" if value is None else str(value), config.sources.get(f.name, "default")))
    return rows
