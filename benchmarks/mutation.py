"""Mutation score of the modules that carry the kit's promises: a benchmark, not a CI job.

mutmut (3.x) derives a module's import name from its file path, while the kit keeps `cli/`,
`model_export/` and `pipeline/` at the top of the checkout and imports them as `mnistkit.*`
(pyproject's package-dir mapping). So the run happens in a staging copy laid out as the import
names are (`mnistkit/pipeline/io/parsing.py`, …) beside a copy of `tests/`; mutmut then copies
that tree into `mutants/`, puts it first on `sys.path`, and every `mnistkit.*` import resolves to
the mutated copy. Each mutant runs only the fast tests that reached its function in mutmut's
coverage pass (`-x`, so the first failure kills it), with mutmut's per-mutant timeout.

    python benchmarks/mutation.py                  # every mutant of every module (make mutation)
    python benchmarks/mutation.py --sample 40      # at most 40 mutants per module, drawn uniformly
    python benchmarks/mutation.py --module pipeline/rows.py
    python benchmarks/mutation.py --previous work/mutation-before/summary.json   # re-run what survived

Writes work/mutation/summary.json (counts per module, every survivor with its diff) and prints the
table docs/RELIABILITY.md carries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The modules under test, by checkout path, and the fast tests that exercise them. mutmut runs, per
# mutant, only those of these tests that called the mutated function.
MODULES: dict[str, list[str]] = {
    "pipeline/io/parsing.py": [
        "tests/pipeline/test_parsing.py",
        "tests/pipeline/test_parsing_properties.py",
        "tests/pipeline/test_formats.py",
        "tests/pipeline/test_compressed_input.py",
    ],
    "pipeline/io/reference.py": ["tests/pipeline/test_parsing_properties.py"],
    "pipeline/io/files.py": [
        "tests/pipeline/test_files.py",
        "tests/pipeline/test_compressed_input.py",
        "tests/pipeline/test_parsing.py",
    ],
    "pipeline/rows.py": [
        "tests/pipeline/test_parsing.py",
        "tests/pipeline/test_handler.py",
        "tests/streaming/test_stream_rows.py",
        "tests/streaming/test_stream_error_files.py",
    ],
    "pipeline/accounting.py": ["tests/pipeline/test_summary_faults.py", "tests/pipeline/test_console.py"],
    "pipeline/inference/handler.py": ["tests/pipeline/test_handler.py"],
    "pipeline/inference/savedmodel.py": ["tests/pipeline/test_model.py", "tests/pipeline/test_model_versions.py"],
    "pipeline/inference/hot_swap.py": [],
}
# Tests added for the survivors of the first run (docs/RELIABILITY.md, "Mutation score").
EXTRA_TESTS = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("*/test_*_mutants.py"))

# Top-level folders and the names they import as (pyproject's [tool.setuptools.package-dir]).
PACKAGES = {"cli": "cli", "model_export": "model_export", "pipeline": "pipeline"}
PYTEST_ARGS = ["-m", "not slow", "-p", "no:cacheprovider", "-p", "no:bqemulator"]
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def import_path(module: str) -> str:
    """`pipeline/io/parsing.py` -> `mnistkit/pipeline/io/parsing.py`, the path mutmut sees."""
    return f"mnistkit/{module}"


def stage(work: Path, modules: list[str], tests: list[str]) -> None:
    """Lay the checkout out under `work` as its import names are, with a mutmut config."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "mnistkit").mkdir(parents=True)
    for folder, name in PACKAGES.items():
        shutil.copytree(REPO / folder, work / "mnistkit" / name, ignore=_IGNORE)
    shutil.copytree(REPO / "tests", work / "tests", ignore=_IGNORE)
    config = [
        "[tool.pytest.ini_options]",
        'testpaths = ["tests"]',
        'filterwarnings = ["ignore::DeprecationWarning"]',
        'markers = ["slow: tests that train a model, run whole pipelines or need emulators/terraform"]',
        "",
        "[tool.mutmut]",
        'source_paths = ["mnistkit"]',
        f"only_mutate = {json.dumps([import_path(m) for m in modules])}",
        f"pytest_add_cli_args = {json.dumps(PYTEST_ARGS)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        # The suite starts TensorFlow and Beam threads; forking from that process is not safe.
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        "timeout_multiplier = 10.0",
        "timeout_constant = 5.0",
    ]
    (work / "pyproject.toml").write_text("\n".join(config) + "\n")


def mutmut(work: Path, *args: str, capture: bool = False, check: bool = True) -> str:
    env = dict(os.environ)
    # Only the staged copy may be importable as mnistkit: no worktree path folder, no checkout.
    env["PYTHONPATH"] = str(work / "mutants")
    env.setdefault("MNISTKIT_SHARED", str(REPO.parent / "shared"))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, "-m", "mutmut", *args]
    done = subprocess.run(command, cwd=work, env=env, check=check, capture_output=capture, text=True)
    return done.stdout or ""


def results(work: Path) -> dict[str, str]:
    """Every mutant's name -> mutmut's status (killed, survived, timeout, no tests, ...)."""
    out = mutmut(work, "results", "--all", "true", capture=True)
    return {m[1]: m[2] for m in re.finditer(r"^\s+(\S+): (.+)$", out, re.M)}


def module_of(mutant: str) -> str:
    dotted = re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]
    return dotted.removeprefix("mnistkit.").replace(".", "/") + ".py"


def sample(names: list[str], per_module: int, seed: int) -> list[str]:
    by_module: dict[str, list[str]] = {}
    for name in sorted(names):
        by_module.setdefault(module_of(name), []).append(name)
    rng = random.Random(seed)
    chosen: list[str] = []
    for group in by_module.values():
        chosen += group if len(group) <= per_module else rng.sample(group, per_module)
    return sorted(chosen)


def summarize(work: Path, statuses: dict[str, str], modules: list[str], seconds: float) -> dict:
    table = {}
    for module in modules:
        counts = Counter(s for n, s in statuses.items() if module_of(n) == module and s != "not checked")
        tried = sum(counts.values())
        table[module] = {
            "mutants": tried,
            "killed": counts["killed"],
            "survived": counts["survived"],
            "timeout": counts["timeout"],
            # No fast test reached the mutated function: a survivor too.
            "no_tests": counts["no tests"],
            "other": {k: v for k, v in counts.items() if k not in ("killed", "survived", "timeout", "no tests")},
            # A timeout is a detected mutant (the tests did not pass); mutmut counts it as caught too.
            "kill_rate": round((counts["killed"] + counts["timeout"]) / tried, 4) if tried else None,
        }
    survivors = {
        name: mutmut(work, "show", name, capture=True)
        for name, status in sorted(statuses.items())
        if status in ("survived", "no tests") and module_of(name) in modules
    }
    total = {k: sum(row[k] for row in table.values()) for k in ("mutants", "killed", "survived", "no_tests", "timeout")}
    total["kill_rate"] = round((total["killed"] + total["timeout"]) / total["mutants"], 4) if total["mutants"] else None
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "seconds": round(seconds),
        "modules": table,
        "total": total,
        "survivors": survivors,
        "statuses": dict(sorted(statuses.items())),
    }


def markdown(summary: dict) -> str:
    lines = [
        "| module | mutants | killed | survived | no tests | timeout | kill rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*summary["modules"].items(), ("**all**", summary["total"])]
    for module, row in rows:
        rate = "–" if row["kill_rate"] is None else f"{row['kill_rate']:.1%}"
        counts = " | ".join(str(row[k]) for k in ("mutants", "killed", "survived", "no_tests", "timeout"))
        lines.append(f"| {module} | {counts} | {rate} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="only these (default: all)")
    parser.add_argument("--sample", type=int, help="at most N mutants per module, drawn uniformly")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=REPO / "work" / "mutation")
    parser.add_argument(
        "--previous",
        type=Path,
        help="a summary.json of an earlier run: its killed mutants stay killed (tests were only added since), "
        "the others run again",
    )
    options = parser.parse_args()
    modules = options.module or list(MODULES)
    tests = sorted({t for m in modules for t in MODULES[m]} | set(EXTRA_TESTS))

    started = time.monotonic()
    stage(options.work_dir, modules, tests)
    names: list[str] = []
    if options.sample:
        # Generates the mutants and the coverage map, then stops: no mutant has this name.
        mutmut(options.work_dir, "run", "--max-children", "1", "none-of-the-mutants", capture=True, check=False)
        names = sample(list(results(options.work_dir)), options.sample, options.seed)
    kept: dict[str, str] = {}
    if options.previous:
        before = json.loads(options.previous.read_text())["statuses"]
        kept = {n: s for n, s in before.items() if s in ("killed", "timeout") and module_of(n) in modules}
        names = sorted(n for n, s in before.items() if n not in kept and s != "not checked" and module_of(n) in modules)
    mutmut(options.work_dir, "run", "--max-children", str(options.max_children), *names)
    statuses = results(options.work_dir)
    if options.previous:
        statuses = {n: s for n, s in statuses.items() if n in names} | kept
    summary = summarize(options.work_dir, statuses, modules, time.monotonic() - started)
    summary["sample_per_module"] = options.sample
    (options.work_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(markdown(summary))
    print(f"\n{len(summary['survivors'])} survivors; diffs in {options.work_dir / 'summary.json'}")


if __name__ == "__main__":
    main()
