"""The REST protocol both `serve` and the remote handler speak: every malformed request named, round trips exact."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mnistkit.pipeline.inference.rest import (
    ProtocolError,
    encode_instances,
    encode_predictions,
    instance_bytes,
    parse_instances,
    parse_predictions,
)

RNG = np.random.default_rng(7)


def _image() -> list[float]:
    return RNG.random(784, dtype=np.float32).tolist()


def test_client_encoding_round_trips_through_the_server_parser():
    keys = np.asarray([3, -(2**63), 2**63 - 1], np.int64)
    images = RNG.random((3, 784), dtype=np.float32)
    images[0, :10] = 0.0
    body = encode_instances([instance_bytes(k, img) for k, img in zip(keys.tolist(), images, strict=True)])
    got_keys, got_images = parse_instances(body)
    np.testing.assert_array_equal(got_keys, keys)
    np.testing.assert_array_equal(got_images, images)  # %.9g keeps float32 exact


def test_text_images_as_bigquery_holds_them():
    keys, images = parse_instances(json.dumps({"instances": [{"key": 4, "image": ",".join(["0.5"] * 784)}]}).encode())
    assert keys.tolist() == [4] and (images == 0.5).all()
    with pytest.raises(ProtocolError, match="instance 0: `image` text must be 784 comma-separated numbers"):
        parse_instances(json.dumps({"instances": [{"key": 4, "image": "0.5,x"}]}).encode())
    with pytest.raises(ProtocolError, match="instance 0: 2 values"):
        parse_instances(json.dumps({"instances": [{"key": 4, "image": "0.5,1"}]}).encode())


def test_bare_lists_are_keyed_by_their_index():
    keys, images = parse_instances(json.dumps({"instances": [_image(), [0] * 784]}).encode())
    assert keys.tolist() == [0, 1] and images.shape == (2, 784) and images[1].max() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", '{"instances": [...]}'),
        (b'{"inputs": []}', '{"instances": [...]}'),
        (b'{"instances": []}', "empty"),
        (json.dumps({"instances": [{"key": 1, "image": [0.5] * 783}]}).encode(), "instance 0: 783 values"),
        (json.dumps({"instances": [[0.5] * 784, {"key": 1}]}).encode(), "instance 1: no list of pixels"),
        (json.dumps({"instances": [{"key": "a", "image": [0.5] * 784}]}).encode(), "`key` must be an integer"),
        (json.dumps({"instances": [{"key": 2**63, "image": [0.5] * 784}]}).encode(), "`key` must be an integer"),
        (json.dumps({"instances": [{"key": 1.5, "image": [0.5] * 784}]}).encode(), "`key` must be an integer"),
        (json.dumps({"instances": [{"key": True, "image": [0.5] * 784}]}).encode(), "`key` must be an integer"),
        (json.dumps({"instances": [[float("nan")] + [0.5] * 783]}).encode(), "instance 0: NaN"),
        (json.dumps({"instances": [[0.1] * 784, [float("inf")] + [0.5] * 783]}).encode(), "instance 1: NaN"),
        (json.dumps({"instances": [[None] + [0.5] * 783]}).encode(), "null"),
        (json.dumps({"instances": [[2.0] + [0.5] * 783]}).encode(), "instance 0: pixel values must lie in 0..1"),
        (json.dumps({"instances": [[-0.1] + [0.5] * 783]}).encode(), "must lie in 0..1"),
        (json.dumps({"instances": [["0.5"] + [0.5] * 783]}).encode(), "instance 0: every pixel must be a number"),
        (json.dumps({"instances": [["x"] + [0.5] * 783]}).encode(), "every pixel must be a number"),
        (json.dumps({"instances": [[True] + [0.5] * 783]}).encode(), "instance 0: every pixel must be a number"),
        (json.dumps({"instances": [[[0.5]] * 784]}).encode(), "every pixel must be a number, not a list"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_malformed_requests_name_their_problem(body, message):
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parse_instances(body)


def test_predictions_round_trip_and_are_checked_against_the_keys():
    keys = np.asarray([5, 9], np.int64)
    probabilities = RNG.random((2, 10), dtype=np.float32)
    classes = probabilities.argmax(axis=1)
    body = encode_predictions(keys, probabilities, classes, model_version="12")
    assert json.loads(body)["model_version"] == "12"
    got, got_classes = parse_predictions(body, keys)
    np.testing.assert_array_equal(got, probabilities)
    np.testing.assert_array_equal(got_classes, classes)
    with pytest.raises(ProtocolError, match="prediction 0 is for key 5, expected 9"):
        parse_predictions(body, keys[::-1])
    with pytest.raises(ProtocolError, match="2 predictions for 3 instances"):
        parse_predictions(body, np.asarray([5, 9, 1]))
    bad = json.loads(body)
    bad["predictions"][1]["probabilities"][3] = None
    with pytest.raises(ProtocolError, match="prediction 1: expected 10 finite"):
        parse_predictions(json.dumps(bad).encode(), keys)
    with pytest.raises(ProtocolError, match="no `predictions`"):
        parse_predictions(b'{"error": "boom"}', keys)
