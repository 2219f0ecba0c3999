# Beam workers import this package before anything of ours runs TensorFlow, on Dataflow in
# processes the CLI never touched: the place to apply the kit's TensorFlow settings there.
from mnistkit.model_export.runtime import configure_tensorflow_env

configure_tensorflow_env()
