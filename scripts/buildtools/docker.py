"""`docker`: build one wheel in docker/Dockerfile (CUDA devel image, PyPI torch, ccache) and export only it.

Same entry and variables as `cibuildwheel` (--torch/--cuda or TORCH_MINOR_VERSION, TORCH_PATCH_VERSION,
CUDA_MINOR_VERSION; TORCH_CUDA_ARCH_LIST, EXT_PARALLEL, MAX_JOBS), same wheel name as the conda-derived wheels.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from . import REPO, BuildToolError
from .cibuildwheel import WheelTarget, resolve_target

DOCKERFILE = REPO / "docker" / "Dockerfile"
# Newest nvidia/cuda devel image of each CUDA minor the torch index builds for (override: --cuda-image-version).
CUDA_IMAGES = {"12.6": "12.6.3", "12.8": "12.8.1", "12.9": "12.9.1", "13.0": "13.0.1"}


def build_args(target: WheelTarget, python: str, cuda_image_version: str | None, environ=os.environ) -> dict:
    image = cuda_image_version or CUDA_IMAGES.get(target.cuda)
    if image is None:
        raise BuildToolError(f"no nvidia/cuda image known for CUDA {target.cuda}; pass --cuda-image-version X.Y.Z")
    env = target.environment(environ)
    args = {"CUDA_IMAGE_VERSION": image, "PYTHON_VERSION": python, "TORCH_VERSION": target.torch,
            "TORCH_INDEX_URL": target.index_url, "TORCH_CUDA_ARCH_LIST": target.arch_list,
            "SAGEATTN_LOCAL_VERSION": target.label}
    args.update({k: env[k] for k in ("MAX_JOBS", "EXT_PARALLEL", "NVCC_APPEND_FLAGS") if k in env})
    return args


def docker_command(target: WheelTarget, python: str, output: Path, engine: str = "docker",
                   cuda_image_version: str | None = None, environ=os.environ) -> list:
    """argv of the image build whose `wheel` stage is exported to `output`."""
    cmd = [engine, "buildx", "build"] if engine == "docker" else [engine, "build"]
    cmd += ["--file", str(DOCKERFILE), "--target", "wheel"]
    for key, value in build_args(target, python, cuda_image_version, environ).items():
        cmd += ["--build-arg", f"{key}={value}"]
    return cmd + ["--output", f"type=local,dest={output}", str(REPO)]


def run(args) -> int:
    target = resolve_target(args.torch, args.cuda, (args.python,))
    output = args.dest.resolve() / "docker"
    cmd = docker_command(target, args.python, output, args.engine, args.cuda_image_version)
    if args.print:
        print(shlex.join(cmd))
        return 0
    if not shutil.which(args.engine):
        raise BuildToolError(f"{args.engine} is not on PATH; install it, pass --engine podman, or --print the command")
    done = subprocess.run(cmd)
    if done.returncode:
        raise BuildToolError(f"the image build failed with exit code {done.returncode} (its log is above)")
    wheel = output / target.wheel_name(args.python, "linux")
    if not wheel.exists():
        raise BuildToolError(f"the build exported no {wheel.name} into {output}")
    print(wheel)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("docker", help="build one PyPI-torch wheel in docker/Dockerfile",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--torch", help="PyPI torch release, e.g. 2.7.0 (default: 2.$TORCH_MINOR_VERSION.$TORCH_PATCH_VERSION)")
    parser.add_argument("--cuda", help="CUDA of the torch index, e.g. 12.8 (default: ${CUDA_MAJOR_VERSION:-12}.$CUDA_MINOR_VERSION)")
    parser.add_argument("--python", default="3.12", help="Python version (default: %(default)s)")
    parser.add_argument("--engine", default="docker", choices=("docker", "podman"))
    parser.add_argument("--cuda-image-version", help="nvidia/cuda image version (default: newest of the CUDA minor)")
    parser.add_argument("--dest", type=Path, default=Path("wheelhouse"), help="output root (default: %(default)s)")
    parser.add_argument("--print", action="store_true", help="print the build command instead of running it")
    parser.set_defaults(func=run)
