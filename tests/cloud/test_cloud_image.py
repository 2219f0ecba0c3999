"""`mnistkit image build`: the build context, the commands and the Dockerfile's dependency step (no build runs)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import apache_beam
import pytest
import yaml
from click.testing import CliRunner
from cloudtest import PROJECT, WORKER_IMAGE

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import load_config
from mnistkit.pipeline.cloud.image import (
    WORKER_DIR,
    docker_engine_available,
    image_with_tag,
    launcher_versions,
    plan_image_build,
)

REPO = Path(__file__).resolve().parents[2]


def _fake_docker(tmp_path: Path, monkeypatch, info_output: str | None) -> None:
    """A `docker` first on PATH whose `docker info` answers (an engine) or fails (a bare CLI)."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{info_output}'\n" if info_output else "#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")


@pytest.mark.parametrize(("engine", "backend"), [("28.2.2", "docker"), (None, "cloud-build")])
def test_the_backend_follows_the_docker_engine(cloud_env, tmp_path, monkeypatch, engine, backend):
    _fake_docker(tmp_path, monkeypatch, engine)
    assert docker_engine_available() is bool(engine)
    assert plan_image_build(load_config(), context=tmp_path).backend == backend


def test_cloud_build_command(cloud_env, tmp_path):
    tmp_path = tmp_path / "context"
    tmp_path.mkdir()
    build = plan_image_build(load_config(), tag="v2", backend="cloud-build", context=tmp_path)
    assert build.backend == "cloud-build" and build.image == WORKER_IMAGE.replace(":latest", ":v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dockerfile", "cloudbuild.yaml", "pyproject.toml"]
    (command,) = build.commands
    assert command[:4] == ["gcloud", "builds", "submit", str(tmp_path)]
    substitutions = dict(pair.split("=", 1) for pair in _flag(command, "--substitutions").split(","))
    assert substitutions == {
        "_IMAGE": build.image,
        "_PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
        "_BEAM_VERSION": apache_beam.__version__,
        "_TF_VERSION": launcher_versions()["TF_VERSION"],
    }
    assert _flag(command, "--project") == PROJECT and _flag(command, "--region") == "us-central1"
    # Every substitution the recipe uses is passed, and the recipe passes each to the Dockerfile.
    recipe = yaml.safe_load((tmp_path / "cloudbuild.yaml").read_text())
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (tmp_path / "cloudbuild.yaml").read_text()))
    assert used == set(substitutions) == set(recipe["substitutions"])
    assert recipe["images"] == ["${_IMAGE}"]
    build_args = {a.split("=", 1)[1].split("=")[0] for a in recipe["steps"][0]["args"] if a.startswith("--build-arg")}
    assert build_args == set(_dockerfile_args())


def _flag(command: list[str], name: str) -> str:
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(name + "=")]
    return value


def _dockerfile_args() -> list[str]:
    return re.findall(r"^ARG (\w+)", (WORKER_DIR / "Dockerfile").read_text(), re.MULTILINE)


def test_local_docker_commands(cloud_env, tmp_path):
    build = plan_image_build(load_config(), backend="docker", context=tmp_path)
    build_command, push = build.commands
    assert build_command[:2] == ["docker", "build"] and build_command[-1] == str(tmp_path)
    assert f"--build-arg=BEAM_VERSION={apache_beam.__version__}" in build_command
    assert f"--tag={WORKER_IMAGE}" in build_command and push == ["docker", "push", WORKER_IMAGE]


def test_the_dockerfile_builds_on_the_launchers_beam_and_installs_the_kits_dependencies(tmp_path):
    dockerfile = (WORKER_DIR / "Dockerfile").read_text()
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert '"tensorflow[and-cuda]==${TF_VERSION}"' in dockerfile
    # Run the Dockerfile's own requirements step on pyproject.toml: TensorFlow (CPU) and Beam are
    # left to the image, every other dependency is installed.
    (script,) = re.findall(r'python -c "(import tomllib.*?)"', dockerfile)
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    script = script.replace("/tmp/mnistkit/pyproject.toml", str(tmp_path / "pyproject.toml"))
    requirements = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert requirements.split() == [d for d in declared if not d.startswith(("tensorflow", "apache-beam"))]
    assert "click>=8.1" in requirements.split()


def test_image_tags():
    assert image_with_tag("r-docker.pkg.dev/p/repo/img:latest", "v1") == "r-docker.pkg.dev/p/repo/img:v1"
    assert image_with_tag("localhost:5000/img", "v1") == "localhost:5000/img:v1"
    assert image_with_tag("r/img:latest", None) == "r/img:latest"


def test_image_build_cli_dry_run(cloud_env):
    result = CliRunner().invoke(cli, ["image", "build", "--dry-run", "--tag", "dev", "--backend", "cloud-build"])
    assert result.exit_code == 0, result.output
    assert f"Building {WORKER_IMAGE.replace(':latest', ':dev')} with cloud-build" in result.output
    assert "$ gcloud builds submit" in result.output
    context = result.output.split("$ gcloud builds submit ", 1)[1].split()[0]
    assert not Path(context).exists()  # a dry run leaves nothing behind


@pytest.mark.parametrize("missing", ["worker_image", "project_id"])
def test_image_build_needs_the_config(cloud_env, missing):
    result = CliRunner().invoke(cli, ["image", "build", "--dry-run", "--set", f"{missing}=none"])
    assert result.exit_code == 1 and f"not configured: {missing}" in result.output
