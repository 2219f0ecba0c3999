"""`mnistkit image build`: the GPU worker image (pipeline/cloud/worker/Dockerfile), built where it can be.

One image per framework: `Dockerfile` (TensorFlow with CUDA) serves SavedModels,
`Dockerfile.pytorch` (PyTorch's CUDA build, `--framework pytorch`) serves PyTorch exports; each
has its Cloud Build recipe, and either goes into the context as Dockerfile / cloudbuild.yaml.

With a local Docker engine the image is built and pushed from this machine; otherwise the build
is submitted to Cloud Build (`gcloud builds submit`). Either way the build context is a temp dir
holding only the Dockerfile, cloudbuild.yaml and pyproject.toml (the image needs nothing else),
so neither sends the checkout's virtualenv anywhere. The versions baked in are the launcher's:
Dataflow unpickles the pipeline with the image's Python and Beam, which must match exactly.

The Beam base is pinned by digest (`worker_base_digest`: a tag on Docker Hub can move, a digest
cannot), the repository's tags are immutable (each build gets a new tag; `latest` is refused),
and Cloud Build runs as the kit's own builder account (`cloudbuild_service_account`) with its
context under `build_source_location`, the one folder that account may read.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnistkit.pipeline.choices import FRAMEWORKS, IMAGE_BACKENDS
from mnistkit.pipeline.cloud.config import CloudConfig, ConfigError

__all__ = [
    "BASE_DIGEST_PLACEHOLDER",
    "TORCH_CUDA",
    "ImageBuild",
    "WORKER_DIR",
    "docker_engine_available",
    "image_with_tag",
    "launcher_versions",
    "plan_image_build",
    "run_image_build",
]

WORKER_DIR = Path(__file__).parent / "worker"
# What a plan shows in place of a digest nobody has set yet; run_image_build refuses to run it.
BASE_DIGEST_PLACEHOLDER = "<worker_base_digest>"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# PyTorch's wheel index for the PyTorch image: one CUDA release that Dataflow's GPU drivers run.
TORCH_CUDA = "cu128"
# Each framework's Dockerfile and Cloud Build recipe in WORKER_DIR.
_RECIPES = {
    "tensorflow": ("Dockerfile", "cloudbuild.yaml"),
    "pytorch": ("Dockerfile.pytorch", "cloudbuild.pytorch.yaml"),
}


@dataclass(frozen=True)
class ImageBuild:
    """A planned build: the image, the context dir to build from, and the commands to run.

    `base_digest` None: no worker_base_digest was set, and the commands hold the placeholder.
    """

    image: str
    backend: str
    context: Path
    versions: dict[str, str]
    commands: list[list[str]]
    base_digest: str | None = None

    def discard(self) -> None:
        """Remove the context dir (after the build, or instead of it for a dry run)."""
        shutil.rmtree(self.context, ignore_errors=True)


def launcher_versions(framework: str = "tensorflow") -> dict[str, str]:
    """Python, Beam and the framework's versions of this machine, as the Dockerfile's build args."""
    versions = {
        "PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
        "BEAM_VERSION": importlib.metadata.version("apache-beam"),
    }
    if framework == "pytorch":
        return {**versions, "TORCH_VERSION": _torch_version(), "TORCH_CUDA": TORCH_CUDA}
    return {**versions, "TF_VERSION": _tensorflow_version()}


def _tensorflow_version() -> str:
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise ConfigError("TensorFlow is not installed here; `make setup` installs it")


def _torch_version() -> str:
    try:
        # The public version: the launcher's CPU wheel is 2.13.0+cpu, the image gets 2.13.0's CUDA build.
        return importlib.metadata.version("torch").split("+", 1)[0]
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError("PyTorch is not installed here: pip install 'mnist-dataflow-kit[torch]'") from None


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


def _tag(image: str) -> str | None:
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def _base_digest(config: CloudConfig) -> str | None:
    digest = config.worker_base_digest
    if digest is not None and not _DIGEST.match(digest):
        raise ConfigError(f"worker_base_digest must look like sha256:<64 hex digits>, got {digest!r}")
    return digest


def _missing_digest_message(versions: dict[str, str]) -> str:
    base = f"apache/beam_python{versions['PYTHON_VERSION']}_sdk:{versions['BEAM_VERSION']}"
    return (
        f"no worker_base_digest: the worker image builds on {base} pinned by digest. Look it up with "
        f"`docker buildx imagetools inspect {base} --format '{{{{json .Manifest.Digest}}}}'` and set it: "
        "--set worker_base_digest=sha256:… or MNISTKIT_WORKER_BASE_DIGEST"
    )


def plan_image_build(
    config: CloudConfig,
    *,
    tag: str | None = None,
    backend: str | None = None,
    context: Path | None = None,
    framework: str = "tensorflow",
) -> ImageBuild:
    """Prepare the context dir and the commands; `backend` None picks docker when an engine answers."""
    config.require("project_id", "region", "worker_image")
    if framework not in FRAMEWORKS:
        raise ConfigError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    backend = backend or ("docker" if docker_engine_available() else "cloud-build")
    if backend not in IMAGE_BACKENDS:
        raise ConfigError(f"backend must be one of {IMAGE_BACKENDS}, got {backend!r}")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        raise ConfigError(f"{pyproject} not found: build the image from a checkout of the kit")
    image = image_with_tag(config.worker_image, tag)
    if _tag(image) in (None, "latest"):
        raise ConfigError(
            f"{image}: the repository's tags are immutable, so every build needs a new tag of its own "
            "(not latest): pass --tag, e.g. --tag v2, and launch with --set worker_image=<that image>"
        )
    if backend == "cloud-build":
        # Before the context is written: a refused plan leaves nothing behind.
        config.require("cloudbuild_service_account", "build_source_location")
    versions = launcher_versions(framework)
    base_digest = _base_digest(config)
    build_args = {**versions, "BEAM_BASE_DIGEST": base_digest or BASE_DIGEST_PLACEHOLDER}
    context = context or Path(tempfile.mkdtemp(prefix="mnistkit-image-"))
    dockerfile, recipe = _RECIPES[framework]
    shutil.copy2(WORKER_DIR / dockerfile, context / "Dockerfile")
    shutil.copy2(WORKER_DIR / recipe, context / "cloudbuild.yaml")
    shutil.copy2(pyproject, context / pyproject.name)
    if backend == "docker":
        commands = [
            [
                "docker", "build", *(f"--build-arg={name}={value}" for name, value in build_args.items()),
                f"--tag={image}", f"--file={context / 'Dockerfile'}", str(context),
            ],
            ["docker", "push", image],
        ]  # fmt: skip
    else:
        account = config.cloudbuild_service_account
        substitutions = {"IMAGE": image, **build_args, "SERVICE_ACCOUNT": account}
        commands = [
            [
                "gcloud", "builds", "submit", str(context),
                f"--config={context / 'cloudbuild.yaml'}",
                f"--substitutions={','.join(f'_{name}={value}' for name, value in substitutions.items())}",
                # Also on the command line: the recipe's serviceAccount names the same account.
                f"--service-account=projects/{config.project_id}/serviceAccounts/{account}",
                f"--gcs-source-staging-dir={config.build_source_location.rstrip('/')}/source",
                f"--project={config.project_id}",
                f"--region={config.region}",
            ]
        ]  # fmt: skip
    return ImageBuild(image, backend, context, versions, commands, base_digest)


def run_image_build(build: ImageBuild) -> None:
    """Run the planned commands, streaming their output; raises CalledProcessError on failure.

    A plan without a base digest is refused (ConfigError) before anything runs.
    """
    if build.base_digest is None:
        build.discard()
        raise ConfigError(_missing_digest_message(build.versions))
    try:
        for command in build.commands:
            subprocess.run(command, check=True)
    finally:
        build.discard()
