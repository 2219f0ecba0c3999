# Beam workers import this package before anything of ours runs TensorFlow, on Dataflow in
# processes the CLI never touched: the place to apply the kit's TensorFlow settings there.
from mnistkit.model_export.runtime import configure_tensorflow_env

configure_tensorflow_env()

# Beam's RunInference module imports its ModelManager when it can, and that imports torch and scipy
# (2.2 s here when torch is installed), though only `use_model_manager=True` handlers need it and
# the kit's never set it. Marked missing, RunInference takes its own ImportError fallback.
import sys  # noqa: E402

sys.modules.setdefault("apache_beam.ml.inference.model_manager", None)  # type: ignore[arg-type]
