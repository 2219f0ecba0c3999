"""PyTorch beside Keras: the CNN and the recipe's MLP trained for real, exported in the kit's layout,
and a user's `state_dict` (the GPU recipe's `fashion.pth`) exported and checked against its own class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from mnistkit.cli.main import cli
from mnistkit.model_export.datasets import load_dataset
from mnistkit.model_export.export import MODEL_JSON, OPENVINO_IR, write_version
from mnistkit.model_export.model import to_model_input
from mnistkit.model_export.torch_export import (
    PROGRAM_FILE,
    STATE_DICT_FILE,
    StateDictError,
    export_state_dict,
    export_torch_model,
    load_program,
    load_state_dict,
)
from mnistkit.model_export.torch_models import build_torch_model
from mnistkit.model_export.torch_train import TorchTrainConfig, train_torch

# One thread: the suite shares two cores, and one thread makes the seeded runs repeatable.
THREADS = 1


class RecipeNetwork(nn.Module):
    """The GPU recipe's model class, as its users wrote it (the old PyTorch quickstart's)."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
            nn.ReLU(),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


@pytest.fixture(scope="module")
def fashion_dir(shared_datasets):
    return shared_datasets / "fashion-mnist"


@pytest.fixture(scope="module")
def fashion_test(fashion_dir):
    images, labels = load_dataset("fashion-mnist", "test", fashion_dir)
    return images[:500], labels[:500]


@pytest.fixture(scope="module")
def recipe_pth(tmp_path_factory):
    """`fashion.pth` as the recipe saved it: plain torch.save(model.state_dict()) of its own class."""
    torch.manual_seed(3)
    model = RecipeNetwork()
    path = tmp_path_factory.mktemp("recipe") / "fashion.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


def _tensorboard_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: [e.value for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.mark.slow
def test_cnn_reaches_097_on_the_mnist_sample_with_the_keras_paths_artefacts(tmp_path, mnist_sample_dir):
    result = train_torch(
        TorchTrainConfig(
            dataset="mnist",
            data_dir=str(mnist_sample_dir),
            output_dir=tmp_path,
            arch="cnn",
            epochs=5,
            threads=THREADS,
            progress=False,
        )
    )
    assert result.test_accuracy >= 0.97
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["framework"] == "pytorch" and metrics["architecture"] == "cnn"
    assert metrics["train_samples"] == 7000 and metrics["test_samples"] == 1000
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4, 5]
    assert all(e["seconds"] > 0 and 0 < e["test_accuracy"] <= 1 for e in metrics["epochs"])
    # The last epoch's test score is the final evaluation: nothing trains after it.
    assert metrics["test"]["accuracy"] == metrics["epochs"][-1]["test_accuracy"] == result.test_accuracy
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
    assert (tmp_path / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Laid out as Keras' TensorBoard callback writes them, so both frameworks' runs compare in one view.
    for run, loss_key in (("train", "loss"), ("validation", "test_loss")):
        scalars = _tensorboard_scalars(tmp_path / "tensorboard" / run)
        assert scalars["epoch_loss"] == pytest.approx([e[loss_key] for e in metrics["epochs"]])
        assert len(scalars["epoch_accuracy"]) == 5
    # The saved weights are the trained network's: reloaded, they score the same.
    reloaded = load_state_dict(tmp_path / STATE_DICT_FILE, "cnn")
    images, labels = load_dataset("mnist", "test", mnist_sample_dir)
    with torch.inference_mode():
        classes = reloaded(torch.from_numpy(to_model_input(images))).argmax(dim=1).numpy()
    assert np.mean(classes == labels) == pytest.approx(result.test_accuracy)


@pytest.mark.slow
def test_recipe_mlp_reaches_085_on_fashion_mnist(tmp_path, fashion_dir):
    seen = []
    result = train_torch(
        TorchTrainConfig(
            dataset="fashion-mnist",
            data_dir=str(fashion_dir),
            output_dir=tmp_path,
            arch="mlp",
            epochs=2,
            max_train_samples=30000,
            threads=THREADS,
            progress=False,
        ),
        on_epoch=seen.append,
    )
    assert result.test_accuracy >= 0.85
    assert result.metrics["test_samples"] == 10000 and result.metrics["train_samples"] == 30000
    assert [e["epoch"] for e in seen] == [1, 2]


def test_recipe_state_dict_exports_and_the_program_matches_its_own_class(tmp_path, recipe_pth, fashion_test):
    model, pth = recipe_pth
    version = export_state_dict(pth, "mlp", tmp_path / "models", {"dataset": "fashion-mnist"})
    assert version.parent == tmp_path / "models" and version.name.isdigit()
    # openvino/: the program as OpenVINO IR, for CPU workers without PyTorch (openvino is in the test setup).
    assert sorted(p.name for p in version.iterdir()) == sorted([MODEL_JSON, PROGRAM_FILE, STATE_DICT_FILE, "openvino"])
    assert (version / OPENVINO_IR).is_file() and (version / OPENVINO_IR).with_suffix(".bin").is_file()
    assert not [p for p in version.parent.iterdir() if p.name.startswith(".")]

    images, _ = fashion_test
    keys = np.arange(10_000, 10_000 + len(images), dtype=np.int64)
    with torch.inference_mode():
        # The recipe fed ToTensor() images, [N, 1, 28, 28] in 0..1; the kit's rows are the same pixels flat.
        expected = torch.softmax(model(torch.from_numpy(images[:, None] / np.float32(255.0))), dim=1).numpy()
        out = load_program(version)(torch.from_numpy(keys), torch.from_numpy(to_model_input(images)))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(out["class"].numpy(), expected.argmax(axis=1))
    np.testing.assert_array_equal(out["key"].numpy(), keys)
    assert out["key"].dtype == torch.int64 and out["class"].dtype == torch.int64
    assert out["probabilities"].dtype == torch.float32

    info = json.loads((version / MODEL_JSON).read_text())
    assert info["framework"] == "pytorch" and info["architecture"] == "mlp"
    assert info["version"] == int(version.name) and info["dataset"] == "fashion-mnist"
    assert info["signature"]["inputs"] == {
        "key": {"dtype": "int64", "shape": [None]},
        "image": {"dtype": "float32", "shape": [None, 784]},
    }
    assert set(info["signature"]["outputs"]) == {"key", "probabilities", "class"}
    assert info["signature"]["image_range"] == [0.0, 1.0]
    assert info["program"] == {"file": PROGRAM_FILE, "format": "torchscript", "load": "torch.jit.load"}
    assert info["scores"] == {"classes": 10, "activation": "relu"}
    assert info["frameworks"]["torch"] == torch.__version__ and "tensorflow" not in info["frameworks"]
    # The state_dict beside the program is the user's, key for key.
    saved = torch.load(version / STATE_DICT_FILE, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_program_runs_in_a_process_without_the_kit_or_the_class(tmp_path, recipe_pth, fashion_test):
    """What a worker does: torch alone loads model.pt; exporting never imports TensorFlow."""
    model, pth = recipe_pth
    images, _ = fashion_test
    np.save(tmp_path / "images.npy", to_model_input(images[:32]))
    export = textwrap.dedent(f"""
        import sys
        from mnistkit.model_export.torch_export import export_state_dict
        print(export_state_dict({str(pth)!r}, "mlp", {str(tmp_path / "models")!r}))
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "export imported TensorFlow"
    """)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    version = subprocess.run(
        [sys.executable, "-c", export], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    serve = textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        program = torch.jit.load({version + "/" + PROGRAM_FILE!r})
        images = torch.from_numpy(np.load({str(tmp_path / "images.npy")!r}))
        with torch.inference_mode():
            out = program(torch.arange(len(images)), images)
        print(json.dumps(out["probabilities"].tolist()))
        assert not [m for m in sys.modules if m.startswith("mnistkit")]
    """)
    # No kit on the path: only the TorchScript file and torch.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probabilities = json.loads(
        subprocess.run(
            [sys.executable, "-I", "-c", serve], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
        ).stdout
    )
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(np.load(tmp_path / "images.npy"))), dim=1).numpy()
    np.testing.assert_allclose(np.array(probabilities, dtype=np.float32), expected, atol=1e-5, rtol=0)


def test_cnn_export_is_the_eval_mode_network(tmp_path, mnist_test_set):
    """Batch norm's running statistics and no dropout: the program equals net.eval() to 1e-5."""
    torch.manual_seed(0)
    net = build_torch_model("cnn")
    # Statistics away from their initial (0, 1), so eval and train mode really differ.
    with torch.no_grad():
        net.train()(torch.rand(256, 784) * 0.5)
    version = export_torch_model(net, "cnn", tmp_path, {"dataset": "mnist"})
    images, _ = mnist_test_set
    x = torch.from_numpy(to_model_input(images[:200]))
    with torch.inference_mode():
        expected = torch.softmax(net.eval()(x), dim=1)
        got = load_program(version)(torch.arange(200), x)["probabilities"]
    assert float((got - expected).abs().max()) <= 1e-5
    assert json.loads((version / MODEL_JSON).read_text())["scores"]["activation"] == "linear"


def test_state_dicts_that_do_not_fit_are_refused_with_the_reason(tmp_path, recipe_pth):
    model, pth = recipe_pth
    with pytest.raises(StateDictError, match=r"does not fit --arch cnn .*it is an --arch mlp state_dict"):
        load_state_dict(pth, "cnn")

    wider = {**model.state_dict(), "linear_relu_stack.4.weight": torch.zeros(12, 512)}
    torch.save(wider, tmp_path / "wider.pth")
    with pytest.raises(StateDictError, match=r"linear_relu_stack.4.weight is \[12, 512\], expected \[10, 512\]"):
        load_state_dict(tmp_path / "wider.pth", "mlp")

    torch.save(model, tmp_path / "whole-model.pth")  # the whole module, pickled: never unpickled here
    with pytest.raises(StateDictError, match=r"not a state_dict saved with torch.save\(model.state_dict\(\)"):
        load_state_dict(tmp_path / "whole-model.pth", "mlp")

    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, tmp_path / "checkpoint.pth")
    with pytest.raises(StateDictError, match="save its model.state_dict"):
        load_state_dict(tmp_path / "checkpoint.pth", "mlp")

    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(StateDictError, match="not a state_dict"):
        load_state_dict(tmp_path / "garbage.pth", "mlp")

    # What nn.DataParallel / DDP save: the same weights under `module.`.
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pth")
    loaded = load_state_dict(tmp_path / "ddp.pth", "mlp")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_failed_write_publishes_no_version(tmp_path):
    def write(staging, version):
        staging.mkdir()
        (staging / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_version(tmp_path, write, 1234)
    assert list(tmp_path.iterdir()) == []
    first = write_version(tmp_path, lambda staging, version: staging.mkdir(), 1234)
    second = write_version(tmp_path, lambda staging, version: staging.mkdir(), 1234)
    assert (first.name, second.name) == ("1234", "1235")


def test_cli_trains_and_exports_pytorch_and_imports_a_state_dict(tmp_path, mnist_sample_dir, recipe_pth):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["train", "--framework", "pytorch", "--arch", "mlp", "--data-dir", str(mnist_sample_dir),
         "--epochs", "1", "--max-train-samples", "1000", "--output-dir", str(tmp_path / "train"),
         "--export-dir", str(tmp_path / "models")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "epoch 1/1: loss" in result.output and "Test accuracy" in result.output
    assert "Exported PyTorch model" in result.output
    (version,) = (tmp_path / "models").iterdir()
    info = json.loads((version / MODEL_JSON).read_text())
    assert info["architecture"] == "mlp" and info["dataset"] == "mnist" and info["train_samples"] == 1000
    assert info["test_accuracy"] == json.loads((tmp_path / "train" / "metrics.json").read_text())["test"]["accuracy"]

    # Re-export what train wrote, then the recipe's fashion.pth: new versions beside the first.
    _, pth = recipe_pth
    for source in (tmp_path / "train" / STATE_DICT_FILE, pth):
        result = runner.invoke(
            cli, ["export", "--from-pytorch", str(source), "--arch", "mlp", "--export-dir", str(tmp_path / "models")]
        )
        assert result.exit_code == 0, result.output
    versions = sorted((tmp_path / "models").iterdir())
    assert len(versions) == 3
    infos = [json.loads((v / MODEL_JSON).read_text()) for v in versions[1:]]
    assert infos[0]["test_accuracy"] == info["test_accuracy"]  # metrics.json beside train's state_dict
    assert infos[1]["source"] == str(pth) and infos[1]["test_accuracy"] is None


def test_cli_refuses_what_cannot_work(tmp_path, recipe_pth, monkeypatch):
    _, pth = recipe_pth
    runner = CliRunner()
    export = ["export", "--export-dir", str(tmp_path / "models")]
    result = runner.invoke(cli, [*export, "--from-pytorch", str(pth)])
    assert result.exit_code == 2 and "--from-pytorch needs --arch" in result.output
    result = runner.invoke(cli, [*export, "--from-pytorch", str(pth), "--arch", "mlp", "--model", str(pth)])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(cli, [*export, "--from-pytorch", str(pth), "--arch", "cnn"])
    assert result.exit_code == 1 and "it is an --arch mlp state_dict" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, [*export, "--model", str(tmp_path / "missing.keras")])
    assert result.exit_code == 2 and "missing.keras' does not exist" in result.output
    result = runner.invoke(cli, ["train", "--arch", "mlp", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--arch mlp needs --framework pytorch" in result.output
    assert not (tmp_path / "models").exists()

    # Without the `torch` extra: one line saying what to install.
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    result = runner.invoke(cli, [*export, "--from-pytorch", str(pth), "--arch", "mlp"])
    assert result.exit_code == 1 and "pip install 'mnist-dataflow-kit[torch]'" in result.output
