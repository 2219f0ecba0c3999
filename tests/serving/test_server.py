"""`mnistkit serve` on a real loopback port with the really trained model: answers as the pipeline
does, turns every kind of bad request into the right status, stays healthy, and swaps in a new
export under load without losing a request."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from conftest import free_port, publish_version

from mnistkit.pipeline.inference.rest import encode_instances, instance_bytes, parse_predictions

PREDICT = "/v1/models/mnist:predict"


def _body(keys: np.ndarray, images: np.ndarray) -> bytes:
    return encode_instances([instance_bytes(k, img) for k, img in zip(keys.tolist(), images, strict=True)])


def _predict(url: str, keys, images, **kwargs) -> requests.Response:
    return requests.post(url + PREDICT, data=_body(keys, images), timeout=30, **kwargs)


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _healthy(url: str) -> bool:
    return requests.get(url + "/health", timeout=10).status_code == 200


def test_digits_are_classified_as_the_pipeline_classifies_them(server, digits, expected):
    keys, images, labels = digits
    probabilities, classes = expected

    def chunk(start: int) -> tuple[np.ndarray, np.ndarray]:
        response = _predict(server.url, keys[start : start + 100], images[start : start + 100])
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == "1000"
        return parse_predictions(response.content, keys[start : start + 100])

    with ThreadPoolExecutor(8) as pool:  # concurrent requests: the batcher joins them
        parts = list(pool.map(chunk, range(0, len(keys), 100)))
    got = np.concatenate([p for p, _ in parts])
    np.testing.assert_array_equal(np.concatenate([c for _, c in parts]), classes)
    np.testing.assert_allclose(got, probabilities, atol=1e-5)
    assert (classes == labels).mean() > 0.85  # a real, trained model

    metrics = _metrics(server.url)
    assert metrics[("mnistkit_serve_requests_total", (("code", "200"), ("route", "predict")))] == 10
    assert metrics[("mnistkit_serve_rows_total", ())] == 1000
    assert metrics[("mnistkit_serve_model_version", (("version", "1000"),))] == 1


def test_bare_pixel_lists_and_the_metadata_route(server, digits, expected):
    keys, images, _ = digits
    response = requests.post(server.url + PREDICT, json={"instances": images[:3].tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["key"] for p in predictions] == [0, 1, 2]
    assert [p["class"] for p in predictions] == expected[1][:3].tolist()

    meta = requests.get(server.url + "/v1/models/mnist", timeout=10).json()
    assert meta["model_version_status"] == [{"version": "1000", "state": "AVAILABLE"}]
    assert meta["signature"]["inputs"]["image"] == {"dtype": "float32", "shape": [None, 784]}
    assert meta["model"]["metadata"]["dataset"] == "mnist"
    assert meta["max_body_bytes"] == 1_500_000


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{oops", 400, "the body is not JSON"),
        (json.dumps({"instances": [[0.5] * 700]}).encode(), 400, "instance 0: 700 values"),
        (b'{"instances": [[NaN' + b", 0.5" * 783 + b"]]}", 400, "instance 0: NaN"),
        (json.dumps({"instances": [{"key": "x", "image": [0] * 784}]}).encode(), 400, "`key` must be an integer"),
        (b'{"instances": [' + b",".join([b"[" + b",".join([b"0.123456789"] * 784) + b"]"] * 200) + b"]}", 413,
         "over the limit of 1,500,000 bytes"),
    ],
)  # fmt: skip
def test_bad_requests_get_their_status_and_a_json_error(server, body, status, message):
    response = requests.post(server.url + PREDICT, data=body, timeout=30)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert _healthy(server.url)


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit(server):
    sent = []

    def chunks():
        for _ in range(400):  # 400 × 8 KB: over 1.5 MB without a Content-Length
            sent.append(1)
            yield b" " * 8192

    response = requests.post(server.url + PREDICT, data=chunks(), timeout=30)
    assert response.status_code == 413 and "over the limit" in response.json()["error"]
    assert _healthy(server.url)


def test_unknown_routes_and_methods_answer_json(server):
    missing = requests.get(server.url + "/v1/models/other", timeout=10)
    assert missing.status_code == 404 and "/v1/models/other" in missing.json()["error"]
    wrong = requests.get(server.url + PREDICT, timeout=10)
    assert wrong.status_code == 405


def test_a_slow_client_is_timed_out_and_the_server_keeps_serving(server, digits):
    keys, images, _ = digits
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + b'{"inst')
        # While it dawdles (body_timeout_s is 1 s here), others are served.
        assert _predict(server.url, keys[:2], images[:2]).status_code == 200
        reply = slow.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in reply
    assert _healthy(server.url)


def test_a_bearer_token_guards_predictions(tmp_path, model_version, digits):
    from mnistkit.pipeline.serving.server import BackgroundServer, ServeConfig

    keys, images, _ = digits
    publish_version(model_version, tmp_path, 5)
    with BackgroundServer(ServeConfig(model=str(tmp_path / "5"), port=0, token="s3cret")) as guarded:
        assert _predict(guarded.url, keys[:1], images[:1]).status_code == 401
        wrong = _predict(guarded.url, keys[:1], images[:1], headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
        assert requests.get(guarded.url + "/v1/models/mnist", timeout=10).status_code == 401
        ok = _predict(guarded.url, keys[:1], images[:1], headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["model_version"] == "5"
        assert _healthy(guarded.url)  # health checks carry no token
        assert requests.get(guarded.url + "/", timeout=10).status_code == 200


def test_vertex_routes_from_the_environment(tmp_path, model_version, digits):
    from mnistkit.pipeline.serving.server import BackgroundServer, ServeConfig, vertex_settings

    keys, images, _ = digits
    settings = vertex_settings(
        {"AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict", "AIP_HEALTH_ROUTE": "/ping",
         "AIP_HTTP_PORT": "0"}
    )  # fmt: skip
    assert settings["port"] == 0
    publish_version(model_version, tmp_path, 7)
    with BackgroundServer(ServeConfig(model=str(tmp_path), **settings)) as vertex:
        body = _body(keys[:2], images[:2])
        response = requests.post(vertex.url + "/v1/endpoints/1/deployedModels/2:predict", data=body, timeout=30)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
        assert requests.get(vertex.url + "/ping", timeout=10).json()["version"] == "7"


def test_overload_is_refused_with_503_and_retry_after(tmp_path, model_version, digits):
    from mnistkit.pipeline.serving.server import BackgroundServer, ServeConfig

    keys, images, _ = digits
    publish_version(model_version, tmp_path, 3)
    body = _body(keys[:200], images[:200])
    config = ServeConfig(model=str(tmp_path), port=0, max_batch=200, max_queued_rows=200, max_wait_ms=0)
    with BackgroundServer(config) as small:
        with ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(lambda _: requests.post(small.url + PREDICT, data=body, timeout=60), range(48)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) > 0
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["Retry-After"] == "1" and "overloaded" in refused.json()["error"]
        assert _healthy(small.url)
        assert small.app.state.service.batcher.queued_rows == 0


def test_a_new_export_is_picked_up_under_load_without_losing_a_request(server, model_version, digits, expected):
    keys, images, _ = digits
    classes = expected[1]
    stop = threading.Event()
    seen: list[tuple[int, str, bool]] = []

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            batch = slice(i % 990, i % 990 + 10)
            response = _predict(server.url, keys[batch], images[batch])
            ok = (
                response.status_code == 200
                and [p["class"] for p in response.json()["predictions"]] == classes[batch].tolist()
            )
            seen.append((response.status_code, response.headers.get("X-Model-Version", ""), ok))
            i += 37

    threads = [threading.Thread(target=client, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    publish_version(model_version, server.export_dir, 2000)
    deadline = time.monotonic() + 60
    while not any(version == "2000" for _, version, _ in seen[-20:]) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    versions = [version for _, version, _ in seen]
    assert all(status == 200 and ok for status, _, ok in seen), [s for s in seen if s[0] != 200][:3]
    assert set(versions) == {"1000", "2000"} and versions[0] == "1000" and versions[-1] == "2000"
    assert requests.get(server.url + "/health", timeout=10).json()["version"] == "2000"
    # Four clients of 10-row requests shared model calls.
    metrics = _metrics(server.url)
    requests_served = metrics[("mnistkit_serve_requests_total", (("code", "200"), ("route", "predict")))]
    assert metrics[("mnistkit_serve_batch_rows_count", ())] < requests_served


def test_the_serve_command_serves_until_terminated(tmp_path, model_version, digits):
    import os
    import signal
    import subprocess
    import sys

    keys, images, _ = digits
    publish_version(model_version, tmp_path, 9)
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from mnistkit.cli.main import cli; cli()",
        "serve",
        "--model",
        str(tmp_path),
        "--port",
        str(port),
    ]
    env = {**os.environ, "AIP_HTTP_PORT": "1"}  # an explicit --port wins over Vertex's variable
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if _healthy(url):
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        response = _predict(url, keys[:4], images[:4])
        assert response.status_code == 200 and response.json()["model_version"] == "9"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # uvicorn finishes the requests in flight, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    assert f"Serving {tmp_path} on http://127.0.0.1:{port}/" in output


def test_the_serve_command_names_a_missing_model(tmp_path):
    from click.testing import CliRunner

    from mnistkit.cli.main import cli

    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "none"), "--port", "0"])
    assert result.exit_code == 1 and "No exported model" in result.output
