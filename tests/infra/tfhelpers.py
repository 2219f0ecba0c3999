"""Helpers for the infra/ tests: HCL loading and terraform runs that leave no trace in the repo.

A uniquely named module (not conftest) so `from tfhelpers import ...` cannot pick up another
directory's conftest."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"
MODULE_NAMES = [
    "services",
    "cmek",
    "storage",
    "bigquery",
    "pubsub",
    "iam",
    "artifact_registry",
    "network",
    "vertex_endpoint",
    "gpu_placement",
]
TERRAFORM = shutil.which("terraform")

requires_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not on PATH")


def _unwrap(node):
    """Drop python-hcl2's bookkeeping keys so every version yields the same plain data."""
    if isinstance(node, dict):
        return {k: _unwrap(v) for k, v in node.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(node, list):
        return [_unwrap(v) for v in node]
    return node


@functools.cache
def load_hcl(path: Path) -> dict:
    """Parsed once per session (lark is slow); callers must not mutate the result."""
    with path.open() as fh:
        # python-hcl2 >= 7 keeps quotes around strings unless told otherwise; older ones strip them.
        options = getattr(hcl2, "SerializationOptions", None)
        if options is None:
            return _unwrap(hcl2.load(fh))
        return _unwrap(hcl2.load(fh, serialization_options=options(with_comments=False, strip_string_quotes=True)))


@functools.cache
def load_module(directory: Path) -> dict:
    """Merge a module's .tf files into {"variable": {name: body}, "resource": {type: {name: body}}, ...}."""
    merged: dict = {
        "variable": {},
        "output": {},
        "resource": {},
        "data": {},
        "module": {},
        "locals": {},
        "terraform": [],
        "provider": {},
    }
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in load_hcl(path).items():
            for block in blocks:
                if kind == "terraform":
                    merged[kind].append(block)
                elif kind == "locals":
                    merged[kind].update(block)
                elif kind in ("resource", "data"):
                    for rtype, named in block.items():
                        merged[kind].setdefault(rtype, {}).update(named)
                else:
                    merged[kind].update(block)
    return merged


def terraform_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TF_DATA_DIR=str(data_dir), TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    # A TF_CLI_CONFIG_FILE naming a missing file only adds a warning to every command.
    cli_config = env.get("TF_CLI_CONFIG_FILE")
    if cli_config and not Path(cli_config).is_file():
        del env["TF_CLI_CONFIG_FILE"]
    return env


def run_terraform(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TERRAFORM, *args, "-no-color"], cwd=cwd, env=env, text=True, capture_output=True, timeout=300
    )


def copy_module(source: Path, target: Path) -> Path:
    """Work on a copy so terraform never writes lock files or state into the repo."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    return target


def top_level_blocks(text: str, header: str) -> list[str]:
    """The source of every top-level block whose first line is exactly `header {` (e.g.
    `locals`, `module "iam"`), braces matched, in file order."""
    blocks = []
    for match in re.finditer(rf"^{re.escape(header)} \{{$", text, re.M):
        depth = 0
        for end in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                blocks.append(text[match.start() : end + 1])
                break
    return blocks


def variables_only_locals(module_dir: Path) -> str:
    """The locals block of a module's main.tf that defines `project_roles` or `prefixes` and, by
    the module's own promise, depends on variables only (so terraform can evaluate it offline)."""
    for block in top_level_blocks((module_dir / "main.tf").read_text(), "locals"):
        if re.search(r"^  (project_roles|prefixes) = ", block, re.M):
            return block
    raise AssertionError(f"{module_dir}/main.tf has no variables-only locals block")


# The iam module's required variables, with stand-in names (the module only wires them into grants).
IAM_VARS = [
    "-var=project_id=demo-proj",
    '-var=buckets={models = "m", data = "d", dataflow = "f"}',
    '-var=prefixes={outputs = "outputs/", temp = "tmp/", build_source = "cloudbuild/"}',
    "-var=dataset_id=mnist",
    '-var=tables={input = "i", input_bytes = "ib", predictions = "p", stream_predictions = "sp"}',
    '-var=artifact_registry={location = "us-central1", repository = "mnistkit"}',
    '-var=pubsub={input_topic = "t", input_subscription = "s",'
    ' dead_letter_topic = "dt", dead_letter_subscription = "ds"}',
]
