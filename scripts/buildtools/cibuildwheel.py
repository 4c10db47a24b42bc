"""`cibuildwheel`: wheels compiled against the PyPI torch of one torch x CUDA entry ([tool.cibuildwheel]).

Linux: manylinux_2_28 image, CUDA toolkit from NVIDIA's RHEL 8 repository, auditwheel repair that leaves torch,
c10 and the CUDA runtime to the torch wheel, then the platform tag renamed to linux_x86_64 so the wheel is named
exactly like the conda-derived one (sageattention-2.2.0+cu128torch2.7.0-cp312-cp312-linux_x86_64.whl) and one
PEP 503 index serves both. Windows: MSVC from the job's developer prompt, CUDA from CUDA_PATH.

The entry comes from --torch/--cuda or from the fork's variables: TORCH_MINOR_VERSION, TORCH_PATCH_VERSION,
CUDA_MINOR_VERSION (CUDA_MAJOR_VERSION, default 12); TORCH_CUDA_ARCH_LIST, EXT_PARALLEL and MAX_JOBS pass
through to setup.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import REPO, BuildToolError, package_version

TORCH_INDEX = "https://download.pytorch.org/whl"
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
PLATFORM_TAGS = {"linux": ("manylinux", "linux_x86_64"), "windows": ("win", "win_amd64")}
PASS_THROUGH = ("EXT_PARALLEL", "MAX_JOBS", "NVCC_APPEND_FLAGS", "CXX_APPEND_FLAGS")


@lru_cache(maxsize=None)
def setup_module():
    """setup.py's module table and rules, loaded by path (main() does not run; torch is not needed)."""
    spec = importlib.util.spec_from_file_location("sageattn_setup_for_buildtools", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def default_arch_list(cuda: str) -> str:
    """The recipe's rule: every arch with a kernel, PTX of the newest; sm_120 needs CUDA >= 12.8."""
    major, minor = (int(p) for p in cuda.split(".")[:2])
    return "8.0;8.6;8.9;9.0;12.0+PTX" if (major, minor) >= (12, 8) else "8.0;8.6;8.9;9.0+PTX"


@dataclass(frozen=True)
class WheelTarget:
    torch: str  # "2.7.0"
    cuda: str  # "12.8"
    pythons: tuple  # ("3.12",)
    arch_list: str

    @property
    def cuda_tag(self) -> str:
        return "cu" + self.cuda.replace(".", "")

    @property
    def label(self) -> str:
        return f"{self.cuda_tag}torch{self.torch}"

    @property
    def index_url(self) -> str:
        return f"{TORCH_INDEX}/{self.cuda_tag}"

    def environment(self, environ=os.environ) -> dict:
        """What the build inside cibuildwheel or docker needs; setup.py checks the label against the torch."""
        env = {"SAGEATTN_TORCH_VERSION": self.torch, "SAGEATTN_TORCH_INDEX_URL": self.index_url,
               "SAGEATTN_CUDA_VERSION": self.cuda, "SAGEATTN_LOCAL_VERSION": self.label,
               "TORCH_CUDA_ARCH_LIST": self.arch_list}
        env.update({k: environ[k] for k in PASS_THROUGH if environ.get(k)})
        return env

    def wheel_name(self, python: str, platform: str) -> str:
        py = "cp" + python.replace(".", "")
        return f"sageattention-{package_version()}+{self.label}-{py}-{py}-{PLATFORM_TAGS[platform][1]}.whl"


def resolve_target(torch: str | None, cuda: str | None, pythons, environ=os.environ) -> WheelTarget:
    """The entry from explicit values, else the fork's variables; checked against setup.py's rules."""
    bs = setup_module().bs
    if not torch and environ.get("TORCH_MINOR_VERSION"):
        torch = f"2.{environ['TORCH_MINOR_VERSION']}.{environ.get('TORCH_PATCH_VERSION') or 0}"
    if not cuda and environ.get("CUDA_MINOR_VERSION"):
        cuda = f"{environ.get('CUDA_MAJOR_VERSION') or 12}.{environ['CUDA_MINOR_VERSION']}"
    if not torch or not re.fullmatch(r"\d+\.\d+\.\d+", torch):
        raise BuildToolError(f"torch version {torch!r}: pass --torch X.Y.Z (a PyPI release, e.g. 2.7.0) or set "
                             "TORCH_MINOR_VERSION and TORCH_PATCH_VERSION")
    if not cuda or not re.fullmatch(r"\d+\.\d+", cuda):
        raise BuildToolError(f"CUDA version {cuda!r}: pass --cuda X.Y (e.g. 12.8, one of the torch index's cuXYZ) "
                             "or set CUDA_MINOR_VERSION")
    for python in pythons:
        if python not in PYTHONS:
            raise BuildToolError(f"--python {python}: the wheels cover {', '.join(PYTHONS)}")
    arch_list = environ.get("TORCH_CUDA_ARCH_LIST") or default_arch_list(cuda)
    setup = setup_module()
    try:
        requested = bs.parse_arch_list(arch_list)
        setup.plan_modules(requested, bs.parse_version(cuda), lambda folder: ["any"])
    except bs.BuildConfigError as exc:
        raise BuildToolError(f"CUDA {cuda} with TORCH_CUDA_ARCH_LIST={arch_list}: {exc}") from None
    return WheelTarget(torch, cuda, tuple(pythons) or PYTHONS, arch_list)


def build_selector(target: WheelTarget, platform: str) -> str:
    """CIBW_BUILD for the chosen Pythons, e.g. "cp312-manylinux_x86_64"."""
    suffix = {"linux": "manylinux_x86_64", "windows": "win_amd64"}[platform]
    return " ".join(f"cp{p.replace('.', '')}-{suffix}" for p in target.pythons)


def cibuildwheel_command(target: WheelTarget, platform: str, output_dir: Path, print_only: bool = False,
                         environ=os.environ) -> tuple[list, dict]:
    """(argv, environment) of the cibuildwheel run for `target`."""
    cmd = [sys.executable, "-m", "cibuildwheel", "--platform", platform]
    cmd += ["--print-build-identifiers"] if print_only else ["--output-dir", str(output_dir)]
    env = {**environ, **target.environment(environ), "CIBW_BUILD": build_selector(target, platform)}
    return cmd + [str(REPO)], env


def rename_like_conda(wheel: Path) -> Path:
    """manylinux_2_28_x86_64 -> linux_x86_64 (auditwheel already proved the policy), as the conda-derived wheels."""
    if "-manylinux" not in wheel.name:
        return wheel
    done = subprocess.run([sys.executable, "-m", "wheel", "tags", "--remove", "--platform-tag", "linux_x86_64",
                           str(wheel)], capture_output=True, text=True)
    if done.returncode:
        raise BuildToolError(f"wheel tags failed on {wheel.name}: {done.stderr.strip()}")
    return wheel.with_name(done.stdout.strip().splitlines()[-1])


def run(args) -> int:
    target = resolve_target(args.torch, args.cuda, args.python or ())
    output = args.dest.resolve() / "cibuildwheel"
    cmd, env = cibuildwheel_command(target, args.platform, output, args.print_build_identifiers)
    if args.dry_run:
        for key in sorted(set(env) - set(os.environ) | {"CIBW_BUILD"} | set(target.environment())):
            print(f"{key}={env[key]}")
        print(" ".join(cmd))
        return 0
    if importlib.util.find_spec("cibuildwheel") is None:
        raise BuildToolError("cibuildwheel is not installed: pip install cibuildwheel==4.3.5")
    if args.platform == "linux" and not args.print_build_identifiers and not shutil.which("docker"):
        raise BuildToolError("cibuildwheel builds Linux wheels in a container: install docker (or set "
                             "CIBW_CONTAINER_ENGINE=podman), or use `build.py docker`")
    done = subprocess.run(cmd, env=env)
    if done.returncode:
        raise BuildToolError(f"cibuildwheel failed with exit code {done.returncode} (its log is above)")
    if not args.print_build_identifiers:
        for wheel in sorted(output.glob(f"sageattention-*+{target.label}-*.whl")):
            print(rename_like_conda(wheel) if args.platform == "linux" else wheel)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("cibuildwheel", help="build wheels against PyPI torch with cibuildwheel",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=("linux", "windows"), default="linux")
    parser.add_argument("--torch", help="PyPI torch release, e.g. 2.7.0 (default: 2.$TORCH_MINOR_VERSION.$TORCH_PATCH_VERSION)")
    parser.add_argument("--cuda", help="CUDA of the torch index, e.g. 12.8 (default: ${CUDA_MAJOR_VERSION:-12}.$CUDA_MINOR_VERSION)")
    parser.add_argument("--python", action="append", help=f"Python version (repeatable; default: {' '.join(PYTHONS)})")
    parser.add_argument("--dest", type=Path, default=Path("wheelhouse"), help="output root (default: %(default)s)")
    parser.add_argument("--print-build-identifiers", action="store_true", help="list what would be built, offline")
    parser.add_argument("--dry-run", action="store_true", help="print the environment and command, run nothing")
    parser.set_defaults(func=run)
