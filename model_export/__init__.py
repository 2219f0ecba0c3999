# Library users may import this package without going through the CLI; its settings must be in
# place before anything here imports TensorFlow.
from mnistkit.model_export.runtime import configure_tensorflow_env

configure_tensorflow_env()
