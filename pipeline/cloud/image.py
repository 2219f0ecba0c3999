"""`mnistkit image build`: the GPU worker image (pipeline/cloud/worker/Dockerfile), built where it can be.

With a local Docker engine the image is built and pushed from this machine; otherwise the build
is submitted to Cloud Build (`gcloud builds submit`). Either way the build context is a temp dir
holding only the Dockerfile, cloudbuild.yaml and pyproject.toml (the image needs nothing else),
so neither sends the checkout's virtualenv anywhere. The versions baked in are the launcher's:
Dataflow unpickles the pipeline with the image's Python and Beam, which must match exactly.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnistkit.pipeline.choices import IMAGE_BACKENDS
from mnistkit.pipeline.cloud.config import CloudConfig, ConfigError

__all__ = [
    "ImageBuild",
    "WORKER_DIR",
    "docker_engine_available",
    "image_with_tag",
    "launcher_versions",
    "plan_image_build",
    "run_image_build",
]

WORKER_DIR = Path(__file__).parent / "worker"


@dataclass(frozen=True)
class ImageBuild:
    """A planned build: the image, the context dir to build from, and the commands to run."""

    image: str
    backend: str
    context: Path
    versions: dict[str, str]
    commands: list[list[str]]

    def discard(self) -> None:
        """Remove the context dir (after the build, or instead of it for a dry run)."""
        shutil.rmtree(self.context, ignore_errors=True)


def launcher_versions() -> dict[str, str]:
    """Python, Beam and TensorFlow versions of this machine, as the Dockerfile's build args."""
    return {
        "PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
        "BEAM_VERSION": importlib.metadata.version("apache-beam"),
        "TF_VERSION": _tensorflow_version(),
    }


def _tensorflow_version() -> str:
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise ConfigError("TensorFlow is not installed here; `make setup` installs it")


def docker_engine_available(docker: str = "docker") -> bool:
    """A Docker CLI that reaches an engine (a bare CLI without a daemon does not count)."""
    if shutil.which(docker) is None:
        return False
    probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, check=False)
    return probe.returncode == 0 and bool(probe.stdout.strip())


def image_with_tag(image: str, tag: str | None) -> str:
    if not tag:
        return image
    name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{name}:{tag}"


def plan_image_build(
    config: CloudConfig, *, tag: str | None = None, backend: str | None = None, context: Path | None = None
) -> ImageBuild:
    """Prepare the context dir and the commands; `backend` None picks docker when an engine answers."""
    config.require("project_id", "region", "worker_image")
    backend = backend or ("docker" if docker_engine_available() else "cloud-build")
    if backend not in IMAGE_BACKENDS:
        raise ConfigError(f"backend must be one of {IMAGE_BACKENDS}, got {backend!r}")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        raise ConfigError(f"{pyproject} not found: build the image from a checkout of the kit")
    context = context or Path(tempfile.mkdtemp(prefix="mnistkit-image-"))
    for source in (WORKER_DIR / "Dockerfile", WORKER_DIR / "cloudbuild.yaml", pyproject):
        shutil.copy2(source, context / source.name)
    image = image_with_tag(config.worker_image, tag)
    versions = launcher_versions()
    if backend == "docker":
        build_args = [f"--build-arg={name}={value}" for name, value in versions.items()]
        commands = [
            ["docker", "build", *build_args, f"--tag={image}", f"--file={context / 'Dockerfile'}", str(context)],
            ["docker", "push", image],
        ]
    else:
        substitutions = ",".join(f"_{name}={value}" for name, value in {"IMAGE": image, **versions}.items())
        commands = [
            [
                "gcloud", "builds", "submit", str(context),
                f"--config={context / 'cloudbuild.yaml'}",
                f"--substitutions={substitutions}",
                f"--project={config.project_id}",
                f"--region={config.region}",
            ]
        ]  # fmt: skip
    return ImageBuild(image, backend, context, versions, commands)


def run_image_build(build: ImageBuild) -> None:
    """Run the planned commands, streaming their output; raises CalledProcessError on failure."""
    try:
        for command in build.commands:
            subprocess.run(command, check=True)
    finally:
        build.discard()
