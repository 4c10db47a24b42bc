"""`channel`: a local conda channel of stand-in packages made from this machine's toolchain.

This machine cannot reach conda-forge, so the hermetic test builds against stand-ins made with
py-rattler-build's assemble_package: python is a venv-style prefix over the running interpreter;
pip, setuptools, wheel, ninja, pytorch and the test tools are unpacked from their wheels; compilers,
sysroot and CUDA are activation-only packages that export the system tools. Releases build against
conda-forge; nothing here is published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform as host
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from . import BuildToolError
from .progress import console, tracker

# Wheels unpacked into stand-ins (with their dependencies). torch's CPU wheel is on local disk.
CPU_REQUIREMENTS = ("pip==25.3", "setuptools==80.9.0", "wheel==0.45.1", "ninja==1.13.0", "torch==2.13.0+cpu",
                    "pytest==9.2.0", "hypothesis==6.170.17", "numpy==2.4.1")
CUDA_TORCH = "torch==2.14.1"  # PyPI's default linux build: CUDA 13.0 (nvidia-* wheels)
CONDA_NAMES = {"torch": "pytorch"}  # wheel name -> conda-forge name where they differ
SUBDIR = "linux-64"
CACHE = Path(os.environ.get("SAGEATTN_HERMETIC_CACHE", Path.home() / ".cache" / "sageattention-hermetic"))


def conda_name(wheel_name: str) -> str:
    from packaging.utils import canonicalize_name

    name = canonicalize_name(wheel_name)
    return CONDA_NAMES.get(name, name)


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def download_wheels(requirements: list[str], wheelhouse: Path) -> list[Path]:
    """Wheels for `requirements` and their dependencies, for this interpreter (pip's configured indexes)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(wheelhouse),
           "--quiet", *requirements]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise BuildToolError(f"pip download failed ({done.stderr.strip().splitlines()[-1:]}); "
                             "make the wheels reachable (PyPI, PIP_FIND_LINKS) or pass --wheelhouse DIR")
    return sorted(wheelhouse.glob("*.whl"))


def _wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode("utf-8")


def _requirements(metadata_text: str):
    from email.parser import Parser

    from packaging.requirements import Requirement

    return [Requirement(line) for line in Parser().parsestr(metadata_text).get_all("Requires-Dist") or []]


def requested_extras(wheels: list[Path]) -> dict[str, set[str]]:
    """Extras some wheel asks of another (torch wants cuda-toolkit[cublas,...]): conda has no extras, so the
    stand-in of the target depends on what its requested extras pull in."""
    extras: dict[str, set[str]] = {}
    for wheel in wheels:
        for req in _requirements(_wheel_metadata(wheel)):
            if req.extras and (req.marker is None or req.marker.evaluate({"extra": ""})):
                extras.setdefault(conda_name(req.name), set()).update(req.extras)
    return extras


def _requires(metadata_text: str, extras: set[str] = frozenset()) -> list[str]:
    """Conda dependency names of a wheel's Requires-Dist for this interpreter (and the requested extras)."""
    names = []
    for req in _requirements(metadata_text):
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            if conda_name(req.name) not in names:
                names.append(conda_name(req.name))
    return names


def _unpack_wheel(wheel: Path, stage: Path, extras: set[str] = frozenset()) -> tuple[str, str, list[str]]:
    """Lays the wheel out as an installed prefix under `stage`; returns (name, version, depends)."""
    from packaging.utils import parse_wheel_filename

    name, version, _, _ = parse_wheel_filename(wheel.name)
    site = stage / "lib" / f"python{_python_tag()}" / "site-packages"
    data_dir = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.data/"
    routes = {"purelib": site, "platlib": site, "scripts": stage / "bin", "headers": stage / "include",
              "data": stage}
    metadata = ""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename.startswith(data_dir):
                kind, _, rest = info.filename[len(data_dir):].partition("/")
                target = routes[kind] / rest
            else:
                target = site / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if (info.external_attr >> 16) & 0o111:
                target.chmod(0o755)
            if info.filename.endswith(".dist-info/METADATA"):
                metadata = target.read_text(encoding="utf-8")
    # Tool wheels (ninja, cmake) carry their executable under <pkg>/data/bin: expose it on PATH.
    for tool in site.glob("*/data/bin/*"):
        (stage / "bin").mkdir(exist_ok=True)
        shutil.copy2(tool, stage / "bin" / tool.name)
    return conda_name(str(name)), str(version), ["python", *_requires(metadata, extras)]


def _build_string(name: str, version: str, depends: list[str], tools) -> str:
    """conda-forge marks pytorch's flavour in the build string (cpu_..., cuda130_...): so do the stand-ins."""
    local = version.partition("+")[2]
    if local.startswith("cu"):
        return f"cuda{local[2:]}_0"
    if name == "pytorch" and any(d.startswith("nvidia-") for d in depends):
        cuda = next(v for n, v, _ in tools if n == "cuda-version").replace(".", "")
        return f"cuda{cuda}_0"
    return f"{local or 'standin'}_0"


def default_wheelhouse(cuda: bool) -> Path:
    return CACHE / ("wheels-cuda" if cuda else "wheels")


def _assemble(name: str, version: str, build: str, stage: Path, out: Path, depends=(), summary="") -> Path:
    from rattler_build import assemble_package

    if not any(stage.rglob("*")):
        raise BuildToolError(f"stand-in {name} has no files in {stage}")
    result = assemble_package(name=name, version=version, target_platform=SUBDIR, build_string=build,
                              output_dir=out, files_dir=stage, depends=list(depends), summary=summary,
                              compression_level=1, detect_prefix=False)
    return result.path


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _python_standin(stage: Path) -> tuple[str, str]:
    """venv-style prefix: bin/python links the running interpreter, pyvenv.cfg points home at it."""
    real = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    version = host.python_version()
    (stage / "bin").mkdir(parents=True)
    for link in (f"python{_python_tag()}", "python3", "python"):
        (stage / "bin" / link).symlink_to(real)
    _write(stage / "pyvenv.cfg", f"home = {real.parent}\ninclude-system-site-packages = false\nversion = {version}\n")
    _write(stage / "lib" / f"python{_python_tag()}" / "site-packages" / "standin-python.txt",
           f"Stand-in for conda-forge python: a venv over {real}.\n")
    return "python", version


def _activation_standin(stage: Path, name: str, exports: dict[str, str]) -> None:
    lines = [f"# stand-in for conda-forge {name}: exports this machine's tool"]
    lines += [f'export {key}="{value}"' for key, value in exports.items()]
    _write(stage / "etc" / "conda" / "activate.d" / f"{name}_activate.sh", "\n".join(lines) + "\n", 0o755)
    _write(stage / "share" / "sageattention-standins" / f"{name}.txt", f"stand-in for conda-forge {name}\n")


def _tool_version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].split()[-1]


def toolchain_standins(cuda: bool) -> list[tuple[str, str, dict[str, str]]]:
    """(name, version, exported variables) of the activation-only packages."""
    for tool in ("gcc", "g++"):
        if shutil.which(tool) is None:
            raise BuildToolError(f"{tool} not found on PATH; install the system compilers (apt-get install g++)")
    gcc_version = _tool_version(["gcc", "-dumpfullversion"])
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    specs = [("gcc_linux-64", gcc_version, {"CC": shutil.which("gcc")}),
             ("gxx_linux-64", gcc_version, {"CXX": shutil.which("g++")}),
             ("sysroot_linux-64", glibc, {})]
    if cuda:
        cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
        nvcc = Path(cuda_home) / "bin" / "nvcc"
        if not nvcc.exists():
            raise BuildToolError(f"{nvcc} not found; set CUDA_HOME to the CUDA toolkit")
        release = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=True).stdout
        cuda_version = release.split("release ")[1].split(",")[0]
        full = release.rsplit("V", 1)[1].split()[0]
        specs += [("cuda-nvcc_linux-64", full, {"CUDA_HOME": cuda_home, "CUDACXX": str(nvcc),
                                                 "PATH": f"{cuda_home}/bin:$PATH"}),
                  ("cuda-version", cuda_version, {}), ("cuda-cudart-dev", full, {}), ("cuda-driver-dev", full, {})]
    return specs


def build_channel(out: Path, wheelhouse: Path | None, cuda: bool) -> Path:
    """Assembles and indexes the stand-in channel in `out`; reuses it when the inputs did not change."""
    requirements = [r for r in CPU_REQUIREMENTS if not (cuda and r.startswith("torch=="))]
    requirements += [CUDA_TORCH] if cuda else []
    tools = toolchain_standins(cuda)
    recipe_of_standins = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # new code, new channel
    key = hashlib.sha256(json.dumps([requirements, tools, sys.executable, recipe_of_standins]).encode()).hexdigest()[:16]
    stamp = out / "standins.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        console.print(f"stand-in channel {out} is up to date")
        return out
    wheels = download_wheels(requirements, wheelhouse or default_wheelhouse(cuda))
    names = [w.name.split("-")[0].lower() for w in wheels]
    if len(set(names)) != len(names):
        raise BuildToolError(f"the wheelhouse holds several versions of {sorted({n for n in names if names.count(n) > 1})}; "
                             "empty it or pass --wheelhouse with one version of each")
    shutil.rmtree(out, ignore_errors=True)
    subdir = out / SUBDIR
    subdir.mkdir(parents=True)
    (out / "noarch").mkdir()
    with tempfile.TemporaryDirectory(prefix="standins-") as tmp, \
            tracker("stand-in packages", len(wheels) + len(tools) + 1) as advance:
        def stage(name: str) -> Path:
            return Path(tmp) / name

        name, version = _python_standin(stage("python"))
        _assemble(name, version, "standin_0", stage("python"), subdir, summary="venv over the machine python")
        advance("python")
        for tool, version, exports in tools:
            _activation_standin(stage(tool), tool, exports)
            _assemble(tool, version, "standin_0", stage(tool), subdir, summary=f"exports the system {tool}")
            advance(tool)
        extras = requested_extras(wheels)
        for wheel in wheels:
            wanted = extras.get(conda_name(wheel.name.split("-")[0]), set())
            name, version, depends = _unpack_wheel(wheel, stage(wheel.name), wanted)
            build = _build_string(name, version, depends, tools)
            _assemble(name, version.partition("+")[0], build, stage(wheel.name), subdir, depends,
                      summary=f"unpacked from {wheel.name}")
            advance(name)
    index_channel(out)
    stamp.write_text(json.dumps({"key": key, "requirements": requirements}))
    return out


def hermetic_overrides(cuda: bool) -> dict[str, list[str]]:
    """Variant values that select what the stand-in channel holds (system compilers, this Python)."""
    tools = {name: version for name, version, _ in toolchain_standins(cuda)}
    torch = (CUDA_TORCH if cuda else next(r for r in CPU_REQUIREMENTS if r.startswith("torch==")))
    gcc_major = tools["gcc_linux-64"].split(".")[0]
    return {"python": [_python_tag()], "pytorch": [".".join(torch.split("==")[1].split(".")[:2])],
            "cuda_compiler_version": [".".join(tools["cuda-version"].split(".")[:2]) if cuda else "None"],
            "c_compiler_version": [gcc_major], "cxx_compiler_version": [gcc_major],
            "c_stdlib_version": [tools["sysroot_linux-64"]]}


def index_channel(channel_dir: Path) -> None:
    from rattler.index import index_fs

    asyncio.run(index_fs(channel_dir, write_zst=False, write_shards=False, force=True))


def run(args) -> int:
    if sysconfig.get_platform() != "linux-x86_64":
        raise BuildToolError("the stand-in channel is linux-64 only; run it on an x86_64 Linux machine")
    out = build_channel(args.out.resolve(), args.wheelhouse, args.cuda)
    print(out)
    overrides = " ".join(f"--override {k}={','.join(v)}" for k, v in hermetic_overrides(args.cuda).items())
    console.print(f"build against it: python scripts/build.py conda --platform linux-64 -c {out} {overrides}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("channel", help="assemble the hermetic stand-in channel (offline tests)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE / "channel", help="channel directory (default: %(default)s)")
    parser.add_argument("--wheelhouse", type=Path, help="directory of wheels to use instead of pip download")
    parser.add_argument("--cuda", action="store_true", help=f"add nvcc/CUDA stand-ins and {CUDA_TORCH}")
    parser.set_defaults(func=run)
