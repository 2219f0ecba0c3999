"""Remote inference in the pipelines: `predict --endpoint` and `stream --endpoint` against a real
`mnistkit serve`, and against a loopback server that fails some requests (their rows dead-lettered
with the HTTP status, the counts reconciled, only failed requests sent again)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from mnistkit.pipeline.inference.remote import (
    EndpointError,
    RemoteBatchHandler,
    _requests,
    is_endpoint,
    predict_url,
)
from mnistkit.pipeline.rows import ParsedBatch


def test_endpoint_uris():
    assert predict_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/v1/models/mnist:predict"
    assert predict_url("https://x.run.app/v1/models/mnist:predict") == "https://x.run.app/v1/models/mnist:predict"
    assert (
        predict_url("vertex://projects/p/locations/europe-west4/endpoints/123")
        == "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/endpoints/123:predict"
    )
    assert is_endpoint("vertex://x") and is_endpoint("http://h") and not is_endpoint("gs://b/models")
    with pytest.raises(EndpointError, match="expected vertex://projects/P/locations/L/endpoints/E"):
        predict_url("vertex://projects/p/endpoints/1")


def test_requests_stay_under_the_size_and_row_limits():
    rng = np.random.default_rng(1)
    rows = ParsedBatch(np.arange(300, dtype=np.int64), rng.random((300, 784), dtype=np.float32), ["t"] * 300)
    for max_rows, max_bytes in [(256, 1_500_000), (1, 1_500_000), (300, 200_000)]:
        parts = _requests(rows, max_rows, max_bytes)
        assert [start for start, _, _ in parts] == [0] + [stop for _, stop, _ in parts[:-1]]
        assert parts[-1][1] == 300
        assert all(stop - start <= max_rows and len(body) <= max_bytes for start, stop, body in parts)
        assert all(json.loads(body)["instances"][0]["key"] == start for start, _, body in parts)
    assert len(_requests(rows, 1, 1_500_000)) == 300
    # By size: every request but the last is as full as the next instance (~10 KB) allows.
    assert all(len(body) > 200_000 - 11_000 for _, _, body in _requests(rows, 300, 200_000)[:-1])


@pytest.fixture(scope="module")
def text_input(tmp_path_factory, digits) -> str:
    from mnistkit.pipeline.io.formats import write_rows

    keys, images, _ = digits
    path = tmp_path_factory.mktemp("remote-input") / "test.txt"
    write_rows(str(path), "text", [(keys, np.rint(images * 255).astype(np.uint8))])
    return str(path)


def _predictions(prefix: Path) -> dict[int, dict]:
    rows = [json.loads(line) for path in sorted(prefix.parent.glob(prefix.name + "-0*.jsonl")) for line in
            path.read_text().splitlines()]  # fmt: skip
    by_key = {row["key"]: row for row in rows}
    assert len(by_key) == len(rows), "a key was predicted twice"
    return by_key


def _dead(prefix: Path) -> list[dict]:
    return [json.loads(line) for path in prefix.parent.glob(prefix.name + "-errors-*.jsonl") for line in
            path.read_text().splitlines()]  # fmt: skip


def test_predict_with_an_endpoint_matches_the_in_pipeline_model(server, text_input, expected, tmp_path):
    from mnistkit.cli.main import cli

    out = tmp_path / "remote"
    result = CliRunner().invoke(
        cli, ["predict", "--endpoint", server.url, "--input", text_input, "--output", str(out), "--max-batch", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "Predicted 1,000 of 1,000 rows" in result.output and "rejected 0" in result.output
    predictions = _predictions(out)
    assert sorted(predictions) == list(range(1000))
    classes = np.asarray([predictions[k]["class"] for k in range(1000)])
    np.testing.assert_array_equal(classes, expected[1])
    summary = json.loads((tmp_path / "remote-summary.json").read_text())
    assert summary["model"] == server.url and summary["rows_predicted"] == 1000


def test_model_and_endpoint_exclude_each_other(server, text_input, tmp_path):
    from mnistkit.cli.main import cli

    both = ["predict", "--model", "m", "--endpoint", server.url, "--input", text_input, "--output", str(tmp_path)]
    assert "give either --model or --endpoint" in CliRunner().invoke(cli, both).output
    bad = ["predict", "--endpoint", "vertex://nope", "--input", text_input, "--output", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, bad)
    assert result.exit_code == 1 and "expected vertex://projects/P/locations/L/endpoints/E" in result.output


class _Flaky:
    """A loopback server in front of `serve` that fails requests by their first key: with
    index = first key // 50, index % 7 == 3 → 400 always, == 5 → 503 the first time, == 6 → 503 always."""

    def __init__(self, upstream: str) -> None:
        self.calls: list[tuple[int, int, int]] = []  # (first key, instances, status answered)
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                first = int(re.match(rb'\{"instances":\[\{"key":(\d+)', body).group(1))
                index, seen = first // 50, sum(1 for key, _, _ in flaky.calls if key == first)
                if index % 7 == 3:
                    status, reply = 400, json.dumps({"error": "instance 0: rejected by the test"}).encode()
                elif index % 7 == 6 or (index % 7 == 5 and seen == 0):
                    status, reply = 503, json.dumps({"error": "overloaded: test"}).encode()
                else:
                    upstream_reply = requests.post(upstream + "/v1/models/mnist:predict", data=body, timeout=30)
                    status, reply = upstream_reply.status_code, upstream_reply.content
                flaky.calls.append((first, body.count(b'"key"'), status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_rows_of_failed_requests_are_dead_lettered_with_the_status(server, text_input, expected, tmp_path):
    import apache_beam as beam

    from mnistkit.pipeline.accounting import Summary, query_counters
    from mnistkit.pipeline.batch import PredictConfig, build_pipeline
    from mnistkit.pipeline.runners import RunnerConfig

    flaky = _Flaky(server.url)
    try:
        out = tmp_path / "flaky"
        runner = RunnerConfig(workers=1, running_mode="in_memory")
        config = PredictConfig(model=flaky.url, input=text_input, output=str(out), max_batch=50, runner=runner)
        # One retry, a short throttle: the default five retries back off for minutes.
        handler = RemoteBatchHandler(
            flaky.url, min_batch_size=50, max_batch_size=50, max_rows=50, num_retries=1, throttle_delay_secs=1
        )
        pipeline = beam.Pipeline(options=runner.pipeline_options())
        build_pipeline(pipeline, config, "text", handler)
        result = pipeline.run()
        result.wait_until_finish()
        summary = Summary.from_counters(
            query_counters(result), input=text_input, output=str(out), model=flaky.url, format="text", wall_time_s=0
        )
    finally:
        flaky.httpd.shutdown()

    sent: dict[int, list[int]] = {}
    for first, count, status in flaky.calls:
        sent.setdefault(first, []).append(status)
        assert count <= 50
    # Each request was sent as its rule says, and retries sent only the failed ones again.
    rule = {3: [400], 5: [503, 200], 6: [503, 503]}
    assert all(statuses == rule.get(first // 50 % 7, [200]) for first, statuses in sent.items()), sent
    assert {tuple(statuses) for statuses in sent.values()} == {(200,), (400,), (503, 200), (503, 503)}
    sizes = {first: count for first, count, _ in flaky.calls}
    lost = sorted(
        k for first, statuses in sent.items() if statuses[-1] != 200 for k in range(first, first + sizes[first])
    )
    predictions = _predictions(out)
    dead = _dead(out)
    dead_keys = sorted(int(letter["raw"].split(":")[0]) for letter in dead)
    assert dead_keys == lost and 0 < len(lost) < 1000
    assert sorted(predictions) == sorted(set(range(1000)) - set(dead_keys))
    assert all(predictions[k]["class"] == expected[1][k] for k in predictions)
    assert summary.rows_read == 1000 and summary.rows_predicted == 1000 - len(lost)
    assert summary.rejected == {"inference_error": len(lost)}
    assert summary.reconciled
    reasons = {letter["detail"].split(": ", 2)[1] for letter in dead}
    assert reasons == {"HTTP 400", "HTTP 503"}
    assert all(letter["reason"] == "inference_error" and flaky.url in letter["detail"] for letter in dead)


def test_stream_with_an_endpoint(server, digits, expected, tmp_path):
    from mnistkit.pipeline.io.formats import write_rows
    from mnistkit.pipeline.streaming.pipeline import StreamConfig, run_stream

    keys, images, _ = digits
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    write_rows(str(incoming / "rows.jsonl"), "jsonl", [(keys[:60], np.rint(images[:60] * 255).astype(np.uint8))])
    (incoming / "bad.jsonl").write_text('{"key": 1000, "image": [0.5]}\n')
    config = StreamConfig(
        model=server.url, input=f"watch://{incoming}", output=str(out), max_batch=16, window_seconds=0.2,
        poll_seconds=0.2, idle=3.0,
    )  # fmt: skip
    started = time.monotonic()
    result = run_stream(config)
    assert time.monotonic() - started < 120
    rows = [
        json.loads(line) for path in sorted(out.glob("predictions-*.jsonl")) for line in path.read_text().splitlines()
    ]
    assert sorted(row["key"] for row in rows) == list(range(60))
    assert all(row["class"] == expected[1][row["key"]] and row["model_version"] == "1000" for row in rows)
    assert result.summary.rows_read == 61 and result.summary.rows_predicted == 60 and result.summary.reconciled
