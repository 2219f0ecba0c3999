"""Timestamps of one `mnistkit predict` from process start: imports, pipeline start, model load,
first prediction, summary, exit (docs/BENCHMARKS.md, "Start-up"). Patches only this process.

    .venv/bin/python benchmarks/startup_timeline.py --model M --input rows-1000.txt --output out --overwrite
"""

from __future__ import annotations

import atexit
import sys
import time

T0 = time.perf_counter()
MARKS: list[tuple[str, float]] = []


def mark(what: str) -> None:
    MARKS.append((what, time.perf_counter() - T0))


def report() -> None:
    for what, at in [*MARKS, ("exit (atexit handlers run)", time.perf_counter() - T0)]:
        print(f"{at:7.3f} s  {what}", file=sys.stderr)


def main() -> None:
    atexit.register(report)
    import apache_beam  # noqa: F401

    mark("apache_beam imported")
    from mnistkit.cli.main import cli
    from mnistkit.pipeline import batch
    from mnistkit.pipeline.inference import handler, runtimes

    mark("kit CLI imported")
    load, start = handler.load_runtime, batch.start_predict

    def timed_load(version_dir, options):
        mark(f"model load starts ({options.name})")
        runtime = load(version_dir, options)
        mark(f"model loaded on {runtime.name}")
        predict = runtime.predict

        def first_predict(keys, images):
            result = predict(keys, images)
            if not any(what == "first prediction" for what, _ in MARKS):
                mark("first prediction")
            return result

        runtime.predict = first_predict
        return runtime

    def timed_start(config):
        mark("start_predict (checks, pipeline build)")
        return start(config)

    handler.load_runtime, batch.start_predict = timed_load, timed_start
    assert runtimes.load_runtime is load
    try:
        cli(["predict", *sys.argv[1:]])
    except SystemExit as exit:
        mark(f"summary printed (status {exit.code})")


if __name__ == "__main__":
    main()
