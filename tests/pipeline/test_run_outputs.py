"""Where a batch run writes and when it replaces the previous outputs (pipeline/io/run_outputs.py):
under a folder of its own, committed only once every sink has finished; a failed run leaves the
previous outputs and summary as they were, and `--overwrite` never replaces the run's own input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistkit.pipeline.batch import OutputExistsError, PredictConfig, run_predict
from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.io.formats import encode_text
from mnistkit.pipeline.io.run_outputs import StagedPrefix, commit, run_folders
from mnistkit.pipeline.runners import RunnerConfig

IN_PROCESS = RunnerConfig(workers=1, running_mode="in_memory")


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_commit_replaces_the_previous_files_and_removes_the_run_folder(tmp_path):
    old = [tmp_path / "p-00000-of-00002.jsonl", tmp_path / "p-00001-of-00002.jsonl", tmp_path / "p-summary.json"]
    for path in old:
        path.write_text("old\n")
    prefix = StagedPrefix(str(tmp_path / "p"), "r1")
    staged = tmp_path / "p-run-r1" / "p-00000-of-00001.jsonl"
    staged.parent.mkdir()
    staged.write_text("new\n")
    assert run_folders(prefix.final) == [prefix.folder]
    final = commit([str(staged)], [prefix], [str(tmp_path / "p-[0-9]*-of-*.jsonl"), str(tmp_path / "p-summary.json")])
    assert final == [str(tmp_path / "p-00000-of-00001.jsonl")]
    assert _files(tmp_path) == ["p-00000-of-00001.jsonl"]
    assert (tmp_path / "p-00000-of-00001.jsonl").read_text() == "new\n"
    assert run_folders(prefix.final) == []


def _source(tmp_path, test_rows, n: int = 40):
    source = tmp_path / "rows.txt"
    source.write_bytes(encode_text(test_rows[0][:n], test_rows[1][:n]))
    return source


class _BrokenHandler(SavedModelHandler):
    """A real model handler whose model call fails outright on the first batch: the run fails."""

    def run_inference(self, batch, model, inference_args=None):
        raise RuntimeError("the accelerator fell off")


def test_a_failed_run_leaves_the_previous_outputs_and_no_run_folder(tmp_path, exported_model, test_rows):
    source = _source(tmp_path, test_rows)
    out = tmp_path / "out"
    out.mkdir()
    config = PredictConfig(model=str(exported_model), input=str(source), output=str(out / "p"), runner=IN_PROCESS)
    first = run_predict(config)
    before = {name: (out / name).read_bytes() for name in _files(out)}
    assert first.rows_predicted == 40 and "p-summary.json" in before

    import apache_beam as beam

    from mnistkit.pipeline import batch

    broken = _BrokenHandler(str(exported_model), min_batch_size=40, max_batch_size=40)
    pipeline = beam.Pipeline(options=IN_PROCESS.pipeline_options())
    batch.build_pipeline(pipeline, config, "text", broken, run_id="failing")
    with pytest.raises(Exception, match="accelerator fell off"):
        pipeline.run().wait_until_finish()
    # The failed run's files stay in its own folder (finish() removes it); the outputs are untouched.
    assert {name: (out / name).read_bytes() for name in _files(out) if "-run-" not in name} == before


def test_overwrite_refuses_an_input_that_matches_the_output_names(tmp_path, exported_model, test_rows):
    from mnistkit.pipeline.io.formats import write_rows

    # `convert --shards` names its files like predictions: data/rows-00000-of-00002.jsonl.
    data = tmp_path / "data"
    write_rows(str(data / "rows.jsonl"), "jsonl", [(test_rows[0][:20], test_rows[1][:20])], shards=2)
    inputs = sorted(p.name for p in data.iterdir())
    config = PredictConfig(
        model=str(exported_model), input=str(data / "rows-*.jsonl"), output=str(data / "rows"), overwrite=True
    )
    with pytest.raises(OutputExistsError, match="matches this run's output names"):
        run_predict(config)
    assert sorted(p.name for p in data.iterdir()) == inputs


def test_overwrite_removes_the_folders_of_killed_runs_and_replaces_outputs_only_at_the_end(
    tmp_path, exported_model, test_rows
):
    source = _source(tmp_path, test_rows, 30)
    out = tmp_path / "out"
    config = PredictConfig(model=str(exported_model), input=str(source), output=str(out / "p"), runner=IN_PROCESS)
    run_predict(config)
    killed = out / "p-run-20000101T000000-dead"
    killed.mkdir()
    (killed / "p-00000-of-00001.jsonl").write_text('{"key": 999}\n')
    with pytest.raises(OutputExistsError, match="p-run-20000101T000000-dead"):
        run_predict(config)
    summary = run_predict(PredictConfig(**{**config.__dict__, "overwrite": True}))
    names = _files(out)
    assert not any("-run-" in name for name in names)
    keys = [json.loads(line)["key"] for name in names if name.startswith("p-0") for line in (out / name).open()]
    assert sorted(keys) == np.arange(30).tolist() and summary.reconciled
    assert json.loads((out / "p-summary.json").read_text())["rows_predicted"] == 30
