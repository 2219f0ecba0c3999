"""A PyTorch export through the whole kit: the recipe's `state_dict`, saved with plain
`torch.save(model.state_dict())`, exported and scored by `predict` (text, JSON lines, TFRecord),
by a watched-folder stream and by `serve`, on both runtimes that serve it (PyTorch and OpenVINO),
every answer checked against the recipe's class called directly."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

torch = pytest.importorskip("torch")

from mnistkit.model_export.evaluate import predict_classes  # noqa: E402
from mnistkit.model_export.export import latest_version  # noqa: E402
from mnistkit.model_export.model import to_model_input  # noqa: E402
from mnistkit.model_export.torch_export import export_state_dict  # noqa: E402
from mnistkit.pipeline.inference.factory import check_scorer  # noqa: E402
from mnistkit.pipeline.inference.hot_swap import LatestModel  # noqa: E402
from mnistkit.pipeline.inference.runtimes import RuntimeOptions, RuntimeUnavailable, load_runtime  # noqa: E402
from mnistkit.pipeline.inference.savedmodel import resolve_model, validate_model  # noqa: E402
from mnistkit.pipeline.streaming.pipeline import StreamConfig, run_stream  # noqa: E402

pytestmark = pytest.mark.slow  # whole pipeline runs


class NeuralNetwork(torch.nn.Module):
    """The GPU recipe's Fashion-MNIST model, as its tutorial writes it (not the kit's copy)."""

    def __init__(self):
        super().__init__()
        self.flatten = torch.nn.Flatten()
        self.linear_relu_stack = torch.nn.Sequential(
            torch.nn.Linear(28 * 28, 512),
            torch.nn.ReLU(),
            torch.nn.Linear(512, 512),
            torch.nn.ReLU(),
            torch.nn.Linear(512, 10),
            torch.nn.ReLU(),
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


@pytest.fixture(scope="module")
def recipe(mnist_test_set) -> NeuralNetwork:
    """The recipe's class after a few Adam steps on the sample (seeded), so its classes mean something."""
    torch.manual_seed(0)
    net = NeuralNetwork()
    torch.nn.init.constant_(net.linear_relu_stack[4].bias, 0.5)  # see docs/PYTORCH.md: the clipped scores
    images, labels = mnist_test_set
    x = torch.from_numpy(to_model_input(images)).reshape(-1, 1, 28, 28)  # ToTensor()'s layout
    y = torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for step in range(60):
        batch = slice(step * 16 % 1000, step * 16 % 1000 + 64)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def export_dir(recipe, tmp_path_factory) -> Path:
    weights = tmp_path_factory.mktemp("recipe") / "fashion.pth"
    torch.save(recipe.state_dict(), weights)
    export_dir = tmp_path_factory.mktemp("pytorch-models")
    export_state_dict(weights, "mlp", export_dir)
    return export_dir


@pytest.fixture(scope="module")
def oracle(recipe, test_rows) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's class called directly on the test split: softmax of its output, and argmax."""
    with torch.inference_mode():
        scores = recipe(torch.from_numpy(to_model_input(test_rows[1].reshape(-1, 28, 28))).reshape(-1, 1, 28, 28))
        probabilities = torch.softmax(scores, dim=1).numpy()
    return probabilities, probabilities.argmax(axis=1)


def _check(predictions: dict[int, dict], oracle, keys: range | list[int]) -> None:
    keys = list(keys)
    assert sorted(predictions) == keys
    got = np.array([[predictions[k][f"pred{d}"] for d in range(10)] for k in keys])
    np.testing.assert_allclose(got, oracle[0][keys], atol=1e-5)
    assert [predictions[k]["class"] for k in keys] == oracle[1][keys].tolist()


def test_a_recipe_state_dict_is_a_version_the_pipeline_recognises(export_dir, recipe, mnist_test_set, oracle):
    version = resolve_model(str(export_dir))
    info = validate_model(str(export_dir))
    assert (info.uri, info.metadata["framework"]) == (version, "pytorch")
    assert (Path(version) / "model.pt").is_file() and (Path(version) / "openvino" / "model.xml").is_file()
    assert resolve_model(f"{version}/model.pt") == version  # what a file watcher reports
    # The oracle is a real model: better than chance after 60 steps, and not one class everywhere.
    assert (oracle[1] == mnist_test_set[1]).mean() > 0.5 and len(set(oracle[1])) == 10
    # `mnistkit evaluate --model <export>` reads the same version.
    assert latest_version(export_dir) == Path(version)
    np.testing.assert_array_equal(predict_classes(export_dir, mnist_test_set[0]), oracle[1])
    # The launch-time check: auto serves it, a TensorFlow-only runtime is refused before anything runs.
    assert check_scorer(str(export_dir), RuntimeOptions(), here=True)[1] in ("openvino", "pytorch")
    with pytest.raises(RuntimeUnavailable, match="tensorflow cannot serve a pytorch export"):
        check_scorer(str(export_dir), RuntimeOptions("tensorflow"), here=True)


@pytest.mark.parametrize("runtime", ["pytorch", "openvino"])
def test_both_runtimes_answer_as_the_recipe_class_from_several_threads(export_dir, oracle, test_rows, runtime):
    from concurrent.futures import ThreadPoolExecutor

    loaded = load_runtime(resolve_model(str(export_dir)), RuntimeOptions(runtime, intra_op_threads=1))
    assert (loaded.name, loaded.precision) == (runtime, "f32")
    keys, images = test_rows[0], to_model_input(test_rows[1].reshape(-1, 28, 28))
    starts = list(range(0, 1000, 125))
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda s: loaded.predict(keys[s : s + 125], images[s : s + 125]), starts))
    probabilities = np.concatenate([p for p, _ in parts])
    classes = np.concatenate([c for _, c in parts])
    assert probabilities.dtype == np.float32 and classes.dtype == np.int64
    assert np.abs(probabilities - oracle[0]).max() <= 1e-5
    np.testing.assert_array_equal(classes, oracle[1])


@pytest.mark.parametrize(("fmt", "runtime"), [("text", "pytorch"), ("jsonl", "pytorch"), ("tfrecord", "pytorch"),
                                              ("text", "openvino")])  # fmt: skip
def test_predict_scores_every_format_as_the_recipe_class(export_dir, inputs, oracle, run_pipeline, tmp_path, fmt,
                                                         runtime):  # fmt: skip
    summary, predictions, dead = run_pipeline(export_dir, inputs[fmt], tmp_path / "out", runtime=runtime)
    assert dead == [] and summary.rows_predicted == 1000 and summary.runtime == runtime
    _check(predictions, oracle, range(1000))


def test_a_watched_folder_of_every_format_scores_as_the_recipe_class(export_dir, test_rows, oracle, tmp_path):
    from mnistkit.pipeline.io.formats import encode_jsonl, encode_text, encode_tfrecord

    keys, pixels = test_rows
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    (incoming / "rows.txt").write_bytes(encode_text(keys[:30], pixels[:30]))
    (incoming / "rows.jsonl").write_bytes(encode_jsonl(keys[30:60], pixels[30:60]))
    (incoming / "rows.tfrecord").write_bytes(encode_tfrecord(keys[60:90], pixels[60:90]))
    config = StreamConfig(model=str(export_dir), input=f"watch://{incoming}", output=str(out), max_batch=16,
                          window_seconds=0.3, poll_seconds=0.2, idle=3.0, runtime="pytorch")  # fmt: skip
    summary = run_stream(config).summary
    files = sorted(out.glob("predictions-*.jsonl"))
    rows = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    predictions = {row["key"]: row for row in rows}
    assert len(rows) == len(predictions) == 90 and summary.reconciled
    assert {row["model_version"] for row in rows} == {Path(resolve_model(str(export_dir))).name}
    _check(predictions, oracle, range(90))


def test_a_stream_on_tensorflow_skips_a_newer_pytorch_version_and_keeps_serving(
    exported_model, export_dir, tmp_path, caplog
):
    """A TensorFlow-pinned model following an export dir where a PyTorch version lands: skipped for
    good with a warning, the SavedModel keeps serving, and no retry loads it again."""
    models = tmp_path / "models"
    shutil.copytree(resolve_model(str(exported_model)), models / "100")
    latest = LatestModel(str(models), check_seconds=0, runtime=RuntimeOptions("tensorflow"))
    shutil.copytree(resolve_model(str(export_dir)), models / "200")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            model, version = latest.current()
            assert (model.name, version) == ("tensorflow", "100")
    skipped = [r for r in caplog.records if "Skipping model version" in r.getMessage()]
    assert len(skipped) == 1 and "tensorflow cannot serve a pytorch export" in skipped[0].getMessage()
    # With auto, the same dir moves on to the PyTorch version.
    model, version = LatestModel(str(models), check_seconds=0).current()
    assert version == "200" and model.name in ("openvino", "pytorch")


def test_serve_answers_for_a_pytorch_export(export_dir, oracle, test_rows):
    from mnistkit.pipeline.serving.server import METADATA_ROUTE, PREDICT_ROUTE, BackgroundServer, ServeConfig

    images = to_model_input(test_rows[1][:20].reshape(-1, 28, 28))
    with BackgroundServer(ServeConfig(model=str(export_dir), port=0, model_check_seconds=0)) as server:
        instances = [{"key": k, "image": image.tolist()} for k, image in enumerate(images)]
        response = requests.post(server.url + PREDICT_ROUTE, json={"instances": instances}, timeout=60)
        assert response.status_code == 200, response.text
        meta = requests.get(server.url + METADATA_ROUTE, timeout=10).json()
    predictions = {p["key"]: p for p in response.json()["predictions"]}
    assert [predictions[k]["class"] for k in range(20)] == oracle[1][:20].tolist()
    got = np.array([predictions[k]["probabilities"] for k in range(20)])
    np.testing.assert_allclose(got, oracle[0][:20], atol=1e-5)
    assert meta["model"]["metadata"]["framework"] == "pytorch"
