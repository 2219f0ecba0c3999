"""Fixtures for the infra/ tests (helpers live in tfhelpers.py)."""

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_missing_cli_config(monkeypatch):
    # pytest-terraform runs terraform with os.environ; same reason as in terraform_env().
    cli_config = os.environ.get("TF_CLI_CONFIG_FILE")
    if cli_config and not Path(cli_config).is_file():
        monkeypatch.delenv("TF_CLI_CONFIG_FILE")
