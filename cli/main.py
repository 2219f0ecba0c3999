"""The `mnistkit` command: a thin Click layer over the library functions in model_export/ and pipeline/."""

from __future__ import annotations

import importlib
import logging

import click

from model_export.runtime import configure_tensorflow_env

configure_tensorflow_env()

# Each command family lives in its own module and exposes COMMANDS; importing them lazily keeps
# `mnistkit --help` fast (TensorFlow and Beam load only when a command runs).
COMMAND_MODULES = [
    "cli.model_cmds",
    "cli.predict_cmds",
    "cli.cloud_cmds",
    "cli.stream_cmds",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "MNISTKIT"})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="mnist-dataflow-kit")
def cli(verbose: int) -> None:
    """Train, export and serve an MNIST model with Apache Beam.

    Everything runs locally by default (DirectRunner, local folders). Options can also be set
    through environment variables named MNISTKIT_<COMMAND>_<OPTION>, e.g. MNISTKIT_TRAIN_EPOCHS=3.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # Local workers' log lines are relayed as warnings (environment notes about the host, not
        # about the run); the kit's own summary says what matters. -v brings them back.
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


for _module in COMMAND_MODULES:
    for _command in importlib.import_module(_module).COMMANDS:
        cli.add_command(_command)
