"""Every choice list the kit offers, in one place: the CLI's option choices and the library's
checks read them from here. Dependency-free, so `mnistkit --help` stays fast."""

__all__ = [
    "BIGQUERY_READ_METHODS",
    "BIGQUERY_WRITES",
    "FORMATS",
    "FRAMEWORKS",
    "IMAGE_BACKENDS",
    "INFERENCE_RUNTIMES",
    "INPUT_FORMATS",
    "PRECISIONS",
    "RUNNERS",
    "RUNNING_MODES",
]

FORMATS = ("text", "jsonl", "tfrecord")
INPUT_FORMATS = (*FORMATS, "idx")
RUNNERS = ("direct", "dataflow")
RUNNING_MODES = ("multi_processing", "multi_threading", "in_memory")
# A bq:// output: add rows to the table, or replace its rows (a batch load).
BIGQUERY_WRITES = ("append", "truncate")
# A bq:// input: the Storage Read API, or an export job where the deployment grants no read sessions.
BIGQUERY_READ_METHODS = ("DIRECT_READ", "EXPORT")
# What a model is trained and exported with (model.json's `framework`).
FRAMEWORKS = ("tensorflow", "pytorch")
# Where `mnistkit image build` builds: Cloud Build, or a local Docker engine.
IMAGE_BACKENDS = ("cloud-build", "docker")
# The engine that runs the model (pipeline/inference/runtimes.py); `auto` picks by export and hardware.
INFERENCE_RUNTIMES = ("auto", "tensorflow", "openvino", "pytorch")
# Model arithmetic: f32, or bf16 where the CPU has native bf16 (OpenVINO only).
PRECISIONS = ("f32", "bf16")
