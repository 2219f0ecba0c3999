"""`predict --endpoint` and `stream --endpoint` against a real `mnistkit serve --token` process on
a loopback port: the bearer token from MNISTKIT_ENDPOINT_TOKEN or --endpoint-token, never printed
nor written; without it every row is a dead letter naming HTTP 401."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from conftest import free_port, publish_version

from mnistkit.cli.main import cli
from mnistkit.pipeline.inference.remote import TOKEN_ENV, EndpointClient, EndpointError, RemoteStreamHandler

TOKEN = "s3cret-7f2a"  # noqa: S105 (a test token)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, model_version: Path):
    """`mnistkit serve --token TOKEN` as its own process; its URL."""
    export_dir = tmp_path_factory.mktemp("guarded")
    publish_version(model_version, export_dir, 42)
    port = free_port()
    env = {**os.environ, "MNISTKIT_SERVE_TOKEN": TOKEN}  # not on the command line: the process list is public
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mnistkit.cli.main import cli; cli()",
            "serve",
            "--model",
            str(export_dir),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "serve exited"
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def rows(tmp_path_factory, digits) -> str:
    from mnistkit.pipeline.io.formats import write_rows

    keys, images, _ = digits
    path = tmp_path_factory.mktemp("token-input") / "rows.jsonl"
    write_rows(str(path), "jsonl", [(keys[:200], np.rint(images[:200] * 255).astype(np.uint8))])
    return str(path)


def _predict(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["predict", *args, "--max-batch", "50"], env=env)


def _written(out: Path) -> str:
    return "".join(p.read_text() for p in out.parent.glob(out.name + "*"))


def test_the_token_from_the_environment_is_sent_and_never_written(guarded, rows, expected, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    out = tmp_path / "env"
    result = _predict(["--endpoint", guarded, "--input", rows, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Predicted 200 of 200 rows" in result.output
    predicted = [json.loads(line) for p in sorted(tmp_path.glob("env-0*.jsonl")) for line in p.read_text().splitlines()]
    assert {r["key"]: r["class"] for r in predicted} == dict(enumerate(expected[1][:200].tolist()))
    assert TOKEN not in result.output and TOKEN not in _written(out)


def test_the_flag_is_sent_for_that_command_only(guarded, rows, tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    out = tmp_path / "flag"
    result = _predict(["--endpoint", guarded, "--endpoint-token", TOKEN, "--input", rows, "--output", str(out)])
    assert result.exit_code == 0 and "Predicted 200 of 200 rows" in result.output, result.output
    assert TOKEN not in result.output and TOKEN not in _written(out)
    assert TOKEN_ENV not in os.environ  # handed to the pipeline, then taken back


def test_without_the_token_every_row_is_a_dead_letter_naming_401(guarded, rows, tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    out = tmp_path / "none"
    result = _predict(["--endpoint", guarded, "--input", rows, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Predicted 0 of 200 rows" in result.output and "rejected 200" in result.output
    dead = [json.loads(line) for p in tmp_path.glob("none-errors-*.jsonl") for line in p.read_text().splitlines()]
    assert len(dead) == 200
    assert all(d["reason"] == "inference_error" and "HTTP 401" in d["detail"] for d in dead)
    wrong = _predict(["--endpoint", guarded, "--input", rows, "--output", str(tmp_path / "wrong")],
                     env={TOKEN_ENV: "nope"})  # fmt: skip
    assert "rejected 200" in wrong.output and "nope" not in _written(tmp_path / "wrong")


def test_stream_sends_the_token(guarded, digits, expected, tmp_path, monkeypatch):
    from mnistkit.pipeline.io.formats import write_rows

    keys, images, _ = digits
    incoming, out = tmp_path / "incoming", tmp_path / "scored"
    incoming.mkdir()
    write_rows(str(incoming / "rows.jsonl"), "jsonl", [(keys[:30], np.rint(images[:30] * 255).astype(np.uint8))])
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    result = CliRunner().invoke(
        cli,
        ["stream", "--endpoint", guarded, "--input", f"watch://{incoming}", "--output", str(out), "--max-batch",
         "10", "--window-seconds", "0.2", "--poll-seconds", "0.2", "--idle-stop", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for p in out.glob("predictions-*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(r["key"] for r in scored) == list(range(30))
    assert all(r["class"] == expected[1][r["key"]] and r["model_version"] == "42" for r in scored)
    assert TOKEN not in result.output


def test_the_token_is_refused_where_it_does_not_belong():
    with pytest.raises(EndpointError, match="Application Default Credentials"):
        RemoteStreamHandler("vertex://projects/p/locations/us-central1/endpoints/1", token=TOKEN)
    with pytest.raises(EndpointError, match="in the clear"):
        EndpointClient("http://10.0.0.5:8080", token=TOKEN)
    # https anywhere, http to a loopback address: accepted.
    EndpointClient("https://mnistkit-serve.a.run.app", token=TOKEN)
    EndpointClient("http://localhost:8080", token=TOKEN)
    EndpointClient("http://[::1]:8080", token=TOKEN)
