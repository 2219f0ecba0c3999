"""Inference runtimes: OpenVINO agrees with TensorFlow on a real export, `auto` picks by hardware and
framework, bf16 is refused where the CPU cannot run it, and the CPU path never imports TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mnistkit.model_export.export import OPENVINO_IR
from mnistkit.model_export.model import to_model_input
from mnistkit.pipeline.inference import runtimes
from mnistkit.pipeline.inference.runtimes import RuntimeOptions, RuntimeUnavailable, choose_runtime, load_runtime
from mnistkit.pipeline.inference.savedmodel import resolve_model


@pytest.fixture(scope="module")
def version_dir(exported_model) -> str:
    return resolve_model(str(exported_model))


@pytest.fixture(scope="module")
def digits(test_rows) -> tuple[np.ndarray, np.ndarray]:
    keys, pixels = test_rows
    return keys, to_model_input(pixels)


@pytest.fixture(scope="module")
def reference(version_dir, digits) -> tuple[np.ndarray, np.ndarray]:
    return load_runtime(version_dir, RuntimeOptions("tensorflow")).predict(*digits)


def _in_calls(runtime, keys, images, rows: int) -> tuple[np.ndarray, np.ndarray]:
    parts = [runtime.predict(keys[i : i + rows], images[i : i + rows]) for i in range(0, len(keys), rows)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([c for _, c in parts])


def test_export_writes_the_openvino_ir_beside_the_saved_model(version_dir):
    assert (Path(version_dir) / OPENVINO_IR).is_file()
    assert (Path(version_dir) / OPENVINO_IR).with_suffix(".bin").stat().st_size > 100_000  # f32 weights
    assert json.loads((Path(version_dir) / "model.json").read_text())["framework"] == "tensorflow"


@pytest.mark.parametrize("rows", [1, 7, 256, 1000])
def test_openvino_f32_agrees_with_tensorflow_within_1e_5(version_dir, digits, reference, rows):
    runtime = load_runtime(version_dir, RuntimeOptions("openvino"))
    assert (runtime.name, runtime.precision) == ("openvino", "f32")
    probabilities, classes = _in_calls(runtime, *digits, rows)
    assert probabilities.dtype == np.float32 and classes.dtype == np.int64
    assert np.abs(probabilities - reference[0]).max() <= 1e-5
    np.testing.assert_array_equal(classes, reference[1])


def test_openvino_without_an_exported_ir_converts_once_into_its_cache(version_dir, digits, reference, tmp_path):
    bare = tmp_path / "version"
    bare.mkdir()
    for name in ("saved_model.pb", "variables"):
        (bare / name).symlink_to(Path(version_dir) / name)
    first = runtimes.openvino_ir(str(bare), tmp_path / "cache")
    assert first.is_file() and runtimes.openvino_ir(str(bare), tmp_path / "cache") == first
    assert not any((tmp_path / "cache").glob(".convert-*"))


def test_openvino_is_safe_to_call_from_several_threads(version_dir, digits, reference):
    runtime = load_runtime(version_dir, RuntimeOptions("openvino", intra_op_threads=1, inter_op_threads=2))
    keys, images = digits
    starts = list(range(0, len(keys), 125))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: runtime.predict(keys[s : s + 125], images[s : s + 125])[0], starts))
    for start, probabilities in zip(starts, results, strict=True):
        assert np.abs(probabilities - reference[0][start : start + 125]).max() <= 1e-5


@pytest.mark.skipif(runtimes.bf16_support() is None, reason="this CPU has no native bf16")
def test_bf16_stays_close_to_f32(version_dir, digits, reference):
    runtime = load_runtime(version_dir, RuntimeOptions("openvino", "bf16"))
    probabilities, classes = _in_calls(runtime, *digits, 256)
    assert runtime.precision == "bf16"
    assert np.abs(probabilities - reference[0]).max() < 0.05
    assert (classes != reference[1]).mean() < 0.01


def test_bf16_is_refused_where_the_cpu_lacks_it(monkeypatch):
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2", "avx512f"})
    with pytest.raises(RuntimeUnavailable, match="native bf16.*--precision f32"):
        choose_runtime(RuntimeOptions("openvino", "bf16"))
    with pytest.raises(RuntimeUnavailable, match="serves f32 only"):
        choose_runtime(RuntimeOptions("tensorflow", "bf16"))


def test_auto_prefers_tensorflow_on_gpus_and_openvino_on_cpus(monkeypatch):
    monkeypatch.setattr(runtimes, "has_cuda_gpu", lambda: True)
    assert choose_runtime(RuntimeOptions()).name == "tensorflow"
    monkeypatch.setattr(runtimes, "has_cuda_gpu", lambda: False)
    assert choose_runtime(RuntimeOptions()).name == "openvino"
    assert choose_runtime(RuntimeOptions("tensorflow")).name == "tensorflow"


def test_a_runtime_serves_only_the_frameworks_it_names():
    with pytest.raises(RuntimeUnavailable, match="no installed runtime serves jax"):
        choose_runtime(RuntimeOptions(), framework="jax")
    with pytest.raises(RuntimeUnavailable, match="runtime tensorflow cannot serve a pytorch export"):
        choose_runtime(RuntimeOptions("tensorflow"), framework="pytorch")
    with pytest.raises(RuntimeUnavailable, match="runtime pytorch cannot serve a tensorflow export"):
        choose_runtime(RuntimeOptions("pytorch"), framework="tensorflow")
    # Remote runs (Dataflow) get the same refusal before they start.
    with pytest.raises(RuntimeUnavailable, match="runtime tensorflow cannot serve a pytorch export"):
        runtimes.check_runtime(RuntimeOptions("tensorflow"), "pytorch", here=False)


def test_auto_serves_pytorch_exports_on_openvino_on_cpus_and_on_pytorch_on_gpus(monkeypatch):
    monkeypatch.setattr(runtimes, "has_cuda_gpu", lambda: False)
    assert choose_runtime(RuntimeOptions(), framework="pytorch").name == "openvino"
    monkeypatch.setattr(runtimes, "has_cuda_gpu", lambda: True)
    assert choose_runtime(RuntimeOptions(), framework="pytorch").name == "pytorch"
    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'onnx'"):
        choose_runtime(RuntimeOptions("onnx"))


def test_a_gpu_seen_without_cuda_visible_devices_does_not_count(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not runtimes.has_cuda_gpu()


def test_a_predict_on_openvino_never_imports_tensorflow_whatever_the_format(exported_model, inputs, tmp_path):
    """A real `mnistkit predict` run, in a fresh process, then a look at what it imported."""
    code = (
        "import sys\n"
        "from mnistkit.cli.main import cli\n"
        "try:\n"
        "    cli(sys.argv[1:])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('TF-MODULES', sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    for fmt in ("text", "jsonl", "tfrecord"):
        output = tmp_path / fmt
        command = [sys.executable, "-c", code, "predict", "--model", str(exported_model), "--input", inputs[fmt],
                   "--output", str(output), "--runtime", "openvino", "--workers", "1"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "TF-MODULES []" in result.stdout, result.stdout
        summary = json.loads((tmp_path / f"{fmt}-summary.json").read_text())
        assert (summary["rows_predicted"], summary["runtime"], summary["precision"]) == (1000, "openvino", "f32")


@pytest.mark.skipif(runtimes.bf16_support() is None, reason="this CPU has no native bf16")
def test_a_bf16_run_reports_its_agreement_with_f32(exported_model, inputs, run_pipeline, tmp_path):
    summary, predictions, _ = run_pipeline(exported_model, inputs["text"], tmp_path / "bf16", precision="bf16")
    assert summary.precision == "bf16" and summary.runtime == "openvino" and len(predictions) == 1000
    check = summary.precision_check
    # The first model call is checked: the whole 1,000-row input, at OpenVINO's 2,048-row calls.
    assert check["rows"] == 1000 and 0.95 <= check["class_agreement_with_f32"] <= 1.0
