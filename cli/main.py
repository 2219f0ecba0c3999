"""The `mnistkit` command: a thin Click layer over the library functions in model_export/ and pipeline/."""

from __future__ import annotations

import importlib
import logging

import click

from mnistkit.model_export.runtime import configure_tensorflow_env

configure_tensorflow_env()

__all__ = ["cli"]

# Each command family lives in its own module and exposes COMMANDS; importing them lazily keeps
# `mnistkit --help` fast (TensorFlow and Beam load only when a command runs).
COMMAND_MODULES = [
    "mnistkit.cli.model_cmds",
    "mnistkit.cli.predict_cmds",
    "mnistkit.cli.cloud_cmds",
    "mnistkit.cli.stream_cmds",
    "mnistkit.cli.serve_cmds",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "MNISTKIT"})
@click.option("-v", "--verbose", count=True, help="More logging (-v info and library notices, -vv debug).")
@click.version_option(package_name="mnist-dataflow-kit")
def cli(verbose: int) -> None:
    """Train, export and serve an MNIST model with Apache Beam.

    Everything runs locally by default (DirectRunner, local folders). Options can also be set
    through environment variables named MNISTKIT_<COMMAND>_<OPTION>, e.g. MNISTKIT_TRAIN_EPOCHS=3.
    """
    from mnistkit.model_export.runtime import quiet_libraries

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        quiet_libraries()


for _module in COMMAND_MODULES:
    for _command in importlib.import_module(_module).COMMANDS:
        cli.add_command(_command)
