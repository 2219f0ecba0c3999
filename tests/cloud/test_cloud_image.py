"""`mnistkit image build`: the build context, the commands, the recipe and Dockerfile they must match, and
the Dockerfile's dependency step (no image is built: docker and gcloud are stand-ins that record their calls)."""

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
from cloudtest import CLOUDBUILD_SA, DATAFLOW_BUCKET, PROJECT, WORKER_IMAGE

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import ConfigError, load_config
from mnistkit.pipeline.cloud.image import (
    BASE_DIGEST_PLACEHOLDER,
    WORKER_DIR,
    docker_engine_available,
    image_with_tag,
    launcher_versions,
    plan_image_build,
    run_image_build,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


def _config(**settings):
    return load_config({name: (value, f"flag --set {name}") for name, value in settings.items()})


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


_FRAMEWORK_ARGS = {"tensorflow": {"_TF_VERSION"}, "pytorch": {"_TORCH_VERSION", "_TORCH_CUDA"}}


@pytest.mark.parametrize(("digest", "framework"), [(DIGEST, "tensorflow"), (None, "tensorflow"), (DIGEST, "pytorch")])
def test_cloud_build_command(cloud_env, tmp_path, digest, framework):
    tmp_path = tmp_path / "context"
    tmp_path.mkdir()
    config = _config(worker_base_digest=digest) if digest else load_config()
    build = plan_image_build(config, tag="v2", backend="cloud-build", context=tmp_path, framework=framework)
    assert build.backend == "cloud-build" and build.image == WORKER_IMAGE.replace(":v1", ":v2")
    assert build.base_digest == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dockerfile", "cloudbuild.yaml", "pyproject.toml"]
    (command,) = build.commands
    assert command[:4] == ["gcloud", "builds", "submit", str(tmp_path)]
    substitutions = dict(pair.split("=", 1) for pair in _flag(command, "--substitutions").split(","))
    assert substitutions == {
        "_IMAGE": build.image,
        "_PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
        "_BEAM_VERSION": apache_beam.__version__,
        **{
            f"_{name}": value
            for name, value in launcher_versions(framework).items()
            if f"_{name}" in _FRAMEWORK_ARGS[framework]
        },
        "_BEAM_BASE_DIGEST": digest or BASE_DIGEST_PLACEHOLDER,
        "_SERVICE_ACCOUNT": CLOUDBUILD_SA,
    }
    if framework == "pytorch":
        # The launcher's torch without its +cpu label: the image installs that version's CUDA build.
        assert (
            substitutions["_TORCH_VERSION"] == torch_version().split("+")[0]
            and "+" not in substitutions["_TORCH_VERSION"]
        )
        assert "download.pytorch.org/whl/${TORCH_CUDA}" in (tmp_path / "Dockerfile").read_text()
        assert "tensorflow[and-cuda]" not in (tmp_path / "Dockerfile").read_text()
    assert _flag(command, "--project") == PROJECT and _flag(command, "--region") == "us-central1"
    # The kit's builder account, and the one folder it may read the context from.
    assert _flag(command, "--service-account") == f"projects/{PROJECT}/serviceAccounts/{CLOUDBUILD_SA}"
    assert _flag(command, "--gcs-source-staging-dir") == f"gs://{DATAFLOW_BUCKET}/cloudbuild/source"
    # Every substitution the recipe uses is passed, and the recipe passes each to the Dockerfile.
    recipe = yaml.safe_load((tmp_path / "cloudbuild.yaml").read_text())
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (tmp_path / "cloudbuild.yaml").read_text()))
    assert used == set(substitutions) == set(recipe["substitutions"])
    assert recipe["images"] == ["${_IMAGE}"]
    assert recipe["serviceAccount"] == "projects/${PROJECT_ID}/serviceAccounts/${_SERVICE_ACCOUNT}"
    build_args = dict(
        a.removeprefix("--build-arg=").split("=", 1) for a in recipe["steps"][0]["args"] if a.startswith("--build-arg")
    )
    assert set(build_args) == set(_dockerfile_args(tmp_path / "Dockerfile"))
    assert {f"_{name}" for name in build_args} == set(substitutions) - {"_IMAGE", "_SERVICE_ACCOUNT"}
    assert all(value == f"${{_{name}}}" for name, value in build_args.items())


def _flag(command: list[str], name: str) -> str:
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(name + "=")]
    return value


def _dockerfile_args(dockerfile: Path = WORKER_DIR / "Dockerfile") -> list[str]:
    return re.findall(r"^ARG (\w+)", dockerfile.read_text(), re.MULTILINE)


def torch_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("torch")


def test_local_docker_commands(cloud_env, tmp_path):
    build = plan_image_build(_config(worker_base_digest=DIGEST), backend="docker", context=tmp_path)
    build_command, push = build.commands
    assert build_command[:2] == ["docker", "build"] and build_command[-1] == str(tmp_path)
    build_args = dict(
        a.removeprefix("--build-arg=").split("=", 1) for a in build_command if a.startswith("--build-arg")
    )
    assert set(build_args) == set(_dockerfile_args())
    assert build_args["BEAM_VERSION"] == apache_beam.__version__ and build_args["BEAM_BASE_DIGEST"] == DIGEST
    assert f"--tag={WORKER_IMAGE}" in build_command and push == ["docker", "push", WORKER_IMAGE]


def _recording_tool(tmp_path: Path, name: str) -> Path:
    """A stand-in `name` on PATH that appends its arguments to a log, one call per line."""
    log = tmp_path / f"{name}.log"
    tool = tmp_path / "bin" / name
    tool.parent.mkdir(exist_ok=True)
    tool.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    tool.chmod(0o755)
    return log


def test_a_build_runs_only_with_the_base_digest(cloud_env, tmp_path, monkeypatch):
    log = _recording_tool(tmp_path, "gcloud")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    unpinned = plan_image_build(load_config(), tag="v2", backend="cloud-build")
    with pytest.raises(ConfigError, match="no worker_base_digest.*apache/beam_python.*imagetools inspect"):
        run_image_build(unpinned)
    assert not log.exists() and not unpinned.context.exists()
    pinned = plan_image_build(_config(worker_base_digest=DIGEST), tag="v2", backend="cloud-build")
    run_image_build(pinned)
    assert f"_BEAM_BASE_DIGEST={DIGEST}" in log.read_text() and not pinned.context.exists()
    with pytest.raises(ConfigError, match="sha256:<64 hex digits>"):
        plan_image_build(_config(worker_base_digest="2.77.0"), backend="cloud-build")


@pytest.mark.parametrize(("setting", "tag"), [({}, "latest"), ({"worker_image": "r/p/img"}, None)])
def test_tags_are_immutable_so_latest_is_refused(cloud_env, tmp_path, setting, tag):
    context = tmp_path / "context"
    context.mkdir()
    with pytest.raises(ConfigError, match="tags are immutable"):
        plan_image_build(_config(**setting), tag=tag, backend="docker", context=context)
    assert not list(context.iterdir())


@pytest.mark.parametrize("missing", ["cloudbuild_service_account", "build_source_location"])
def test_cloud_build_needs_the_builder_account_and_its_folder(cloud_env, tmp_path, missing):
    context = tmp_path / "context"
    context.mkdir()
    with pytest.raises(ConfigError, match=f"not configured: {missing}"):
        plan_image_build(_config(**{missing: "none"}), backend="cloud-build", context=context)
    assert not list(context.iterdir())


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
    assert f"Building {WORKER_IMAGE.replace(':v1', ':dev')} with cloud-build" in result.output
    assert "$ gcloud builds submit" in result.output
    assert f"_BEAM_BASE_DIGEST={BASE_DIGEST_PLACEHOLDER}" in result.output
    assert "worker_base_digest is not set: a real build refuses to run" in result.output
    context = result.output.split("$ gcloud builds submit ", 1)[1].split()[0]
    assert not Path(context).exists()  # a dry run leaves nothing behind


def test_image_build_cli_dry_run_for_the_pytorch_image(cloud_env):
    args = ["image", "build", "--dry-run", "--tag", "dev", "--backend", "docker", "--framework", "pytorch"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"--build-arg=TORCH_VERSION={torch_version().split('+')[0]}" in result.output
    assert "--build-arg=TORCH_CUDA=cu" in result.output and "TF_VERSION" not in result.output


@pytest.mark.parametrize("missing", ["worker_image", "project_id"])
def test_image_build_needs_the_config(cloud_env, missing):
    result = CliRunner().invoke(cli, ["image", "build", "--dry-run", "--set", f"{missing}=none"])
    assert result.exit_code == 1 and f"not configured: {missing}" in result.output
