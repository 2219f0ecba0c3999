"""Option values shared by the pipeline and the CLI; dependency-free so `mnistkit --help` stays fast."""

FORMATS = ("text", "jsonl", "tfrecord")
INPUT_FORMATS = (*FORMATS, "idx")
RUNNERS = ("direct", "dataflow")
RUNNING_MODES = ("multi_processing", "multi_threading", "in_memory")
