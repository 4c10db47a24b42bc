"""Build-time rules shared by setup.py, sageattention._ext and their tests: arch lists, per-module gencodes,
nvcc minimums, version labels, the build record.

Standard library only: setup.py loads this file by path (the package itself needs torch), and the runtime
loader uses it to decide whether a compiled module can run on a GPU.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence


class BuildConfigError(ValueError):
    """A build setting that cannot work; the message names the setting and the fix."""


@dataclass(frozen=True, order=True)
class Arch:
    """One entry of TORCH_CUDA_ARCH_LIST: compute capability, suffix ("a" arch-specific, "f" family), +PTX."""

    major: int
    minor: int
    suffix: str = ""
    ptx: bool = False

    @property
    def cc(self) -> tuple:
        return (self.major, self.minor)

    @property
    def sm(self) -> str:
        return f"{self.major}{self.minor}{self.suffix}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}{self.suffix}{'+PTX' if self.ptx else ''}"

    def gencodes(self) -> list:
        flags = [f"-gencode=arch=compute_{self.sm},code=sm_{self.sm}"]
        if self.ptx:
            flags.append(f"-gencode=arch=compute_{self.sm},code=compute_{self.sm}")
        return flags


# PyTorch's named arch groups (torch.utils.cpp_extension), for users who write TORCH_CUDA_ARCH_LIST=Hopper.
NAMED_ARCHS = {
    "ampere": "8.0;8.6+PTX",
    "ampere+tegra": "8.7",
    "ada": "8.9+PTX",
    "hopper": "9.0+PTX",
    "blackwell": "10.0;10.3;12.0;12.1+PTX",
}

_ENTRY = re.compile(r"^(?:(\d+)\.(\d)|sm_?(\d+)(\d))([af]?)(\+ptx)?$", re.IGNORECASE)


def parse_arch_list(text: str, source: str = "TORCH_CUDA_ARCH_LIST") -> tuple:
    """Arches in `text` ("8.0 8.6;8.9,9.0a", "sm_90a", "12.0+PTX", "Hopper"), sorted, duplicates merged."""
    merged = {}
    for raw in re.split(r"[;,\s]+", text.strip()):
        if not raw:
            continue
        expanded = NAMED_ARCHS.get(raw.lower())
        if expanded:
            for arch in parse_arch_list(expanded, source):
                key = arch.cc + (arch.suffix,)
                merged[key] = merged.get(key, False) or arch.ptx
            continue
        m = _ENTRY.match(raw)
        if not m:
            raise BuildConfigError(
                f"{source} entry {raw!r} is not a CUDA arch: write entries like 8.0, 8.9, 9.0a, sm_90a or 12.0+PTX"
            )
        major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        key = (int(major), int(minor), m.group(5).lower())
        merged[key] = merged.get(key, False) or bool(m.group(6))
    return tuple(sorted(Arch(maj, mi, suf, ptx) for (maj, mi, suf), ptx in merged.items()))


def format_arch_list(archs: Sequence[Arch]) -> str:
    return ";".join(str(a) for a in archs)


def parse_version(text: str) -> tuple:
    """(major, minor) of "12.4", "12.4.131", "2.8.0+cu129"."""
    m = re.match(r"^\s*(\d+)\.(\d+)", text or "")
    if not m:
        raise BuildConfigError(f"cannot read a version from {text!r}")
    return (int(m.group(1)), int(m.group(2)))


def parse_nvcc_version(output: str) -> str:
    """Full version ("13.0.88") from `nvcc --version` output."""
    m = re.search(r"release \d+\.\d+, V(\d+\.\d+\.\d+)", output) or re.search(r"release (\d+\.\d+)", output)
    if not m:
        raise BuildConfigError("cannot read the CUDA version from `nvcc --version`; check CUDA_HOME points at a toolkit")
    return m.group(1)


# First nvcc release that knows each target (CUDA release notes). "a" targets need 12.0, "f" targets 12.9.
NVCC_FOR_ARCH = {
    (8, 0): (11, 0), (8, 6): (11, 1), (8, 7): (11, 4), (8, 9): (11, 8), (9, 0): (11, 8),
    (10, 0): (12, 8), (10, 1): (12, 8), (10, 3): (12, 9), (11, 0): (13, 0), (12, 0): (12, 8), (12, 1): (12, 9),
}
NVCC_FOR_SUFFIX = {"a": (12, 0), "f": (12, 9)}


@dataclass(frozen=True)
class ModuleSpec:
    """One compiled module: the archs it serves and the nvcc its kernels need."""

    name: str  # import name, e.g. "sageattention._C_sm80"
    folder: str  # source folder relative to the repository root
    min_cc: tuple = (8, 0)
    only_cc: Optional[tuple] = None  # serve exactly this capability (arch-specific kernels)
    suffix: str = ""  # forced target suffix, "a" for wgmma/TMA code
    min_nvcc: tuple = (11, 8)
    nvcc_reason: str = ""  # what needs min_nvcc, for the error message

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def serves(self) -> str:
        if self.only_cc:
            return f"{self.only_cc[0]}.{self.only_cc[1]}{self.suffix}"
        return f">= {self.min_cc[0]}.{self.min_cc[1]}"

    def archs(self, requested: Sequence[Arch]) -> tuple:
        """The targets this module compiles for out of `requested`."""
        out = []
        for arch in requested:
            if arch.cc < self.min_cc or (self.only_cc and arch.cc != self.only_cc):
                continue
            if self.suffix:  # arch-specific code: PTX of an "a" target cannot run on any other GPU
                arch = replace(arch, suffix=self.suffix, ptx=False)
            if arch not in out:
                out.append(arch)
        return tuple(out)


def check_nvcc(spec: ModuleSpec, archs: Sequence[Arch], nvcc: tuple, source: str = "TORCH_CUDA_ARCH_LIST") -> None:
    """Raise BuildConfigError when nvcc `nvcc` (major, minor) cannot build `spec` for `archs`."""
    for arch in archs:
        needed = max(NVCC_FOR_ARCH.get(arch.cc, (0, 0)), NVCC_FOR_SUFFIX.get(arch.suffix, (0, 0)), spec.min_nvcc)
        if nvcc < needed:
            why = spec.nvcc_reason if needed == spec.min_nvcc and spec.nvcc_reason else f"nvcc's sm_{arch.sm} target"
            raise BuildConfigError(
                f"nvcc {nvcc[0]}.{nvcc[1]} is too old for sm_{arch.sm} in {spec.name} ({why} needs CUDA >= "
                f"{needed[0]}.{needed[1]}): install a newer CUDA toolkit or remove {arch.major}.{arch.minor} from {source}"
            )


def gencode_flags(archs: Sequence[Arch]) -> list:
    return [flag for arch in archs for flag in arch.gencodes()]


def runs_on(built: Sequence[str], capability: tuple) -> bool:
    """Whether code built for `built` (entries as in the build record, e.g. "8.0", "9.0a", "12.0+PTX") has an
    image a GPU of `capability` can run: a cubin of the same major and a lower or equal minor ("a" targets
    only on their exact arch), or PTX of a lower or equal arch (JIT-compiled by the driver)."""
    for arch in parse_arch_list(";".join(built), source="build record"):
        if arch.suffix == "a":
            if arch.cc == tuple(capability):
                return True
            continue
        if arch.major == capability[0] and arch.minor <= capability[1]:
            return True
        if arch.ptx and not arch.suffix and arch.cc <= tuple(capability):
            return True
    return False


def env_flag(environ: Mapping, name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise BuildConfigError(f"{name}={environ[name]!r} is not a boolean: use 1 or 0")


def env_positive_int(environ: Mapping, name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise BuildConfigError(f"{name}={value!r} is not a positive integer: use e.g. {name}=4")
    return int(value)


def env_flags(environ: Mapping, name: str) -> list:
    try:
        return shlex.split(environ.get(name, ""))
    except ValueError as exc:
        raise BuildConfigError(f"{name} cannot be split into flags ({exc}): check its quotes") from None


_LOCAL = re.compile(r"^[a-z0-9]+(?:\.[a-z0-9]+)*$", re.IGNORECASE)
_LABEL = re.compile(r"^cu(\d+)torch(\d+)\.(\d+)\.(\d+)$")


def local_version(environ: Mapping, cuda_major: Optional[int] = None) -> Optional[str]:
    """Local version label from SAGEATTN_LOCAL_VERSION, or from the fork's CUDA_MINOR_VERSION /
    TORCH_MINOR_VERSION / TORCH_PATCH_VERSION (CUDA_MAJOR_VERSION defaults to the toolkit's, else 12), or None."""
    label = environ.get("SAGEATTN_LOCAL_VERSION", "").strip()
    if label:
        if not _LOCAL.match(label):
            raise BuildConfigError(
                f"SAGEATTN_LOCAL_VERSION={label!r} is not a PEP 440 local label: use letters, digits and dots, "
                "e.g. cu129torch2.8.0"
            )
        return label
    if not (environ.get("CUDA_MINOR_VERSION") or environ.get("TORCH_MINOR_VERSION")):
        return None
    parts = {}
    for name, default in (("CUDA_MAJOR_VERSION", cuda_major or 12), ("CUDA_MINOR_VERSION", None),
                          ("TORCH_MINOR_VERSION", None), ("TORCH_PATCH_VERSION", 0)):
        value = environ.get(name, "").strip() or default
        if value is None:
            raise BuildConfigError(
                f"{name} is unset: CUDA_MINOR_VERSION and TORCH_MINOR_VERSION name the wheel together "
                "(e.g. CUDA_MINOR_VERSION=8 TORCH_MINOR_VERSION=7 TORCH_PATCH_VERSION=0 -> +cu128torch2.7.0)"
            )
        if not str(value).isdigit():
            raise BuildConfigError(f"{name}={value!r} is not a number: e.g. {name}=8")
        parts[name] = int(value)
    return (f"cu{parts['CUDA_MAJOR_VERSION']}{parts['CUDA_MINOR_VERSION']}"
            f"torch2.{parts['TORCH_MINOR_VERSION']}.{parts['TORCH_PATCH_VERSION']}")


def check_label(label: Optional[str], torch_version: str, torch_cuda: Optional[str]) -> None:
    """A label of the form cuXYtorchA.B.C must name the torch and CUDA the build really uses."""
    m = _LABEL.match(label or "")
    if not m:
        return
    built_torch = re.match(r"^(\d+\.\d+\.\d+)", torch_version).group(1)
    built_cuda = "".join(str(p) for p in parse_version(torch_cuda)) if torch_cuda else "none"
    named_torch = ".".join(m.group(i) for i in (2, 3, 4))
    if (m.group(1), named_torch) != (built_cuda, built_torch):
        raise BuildConfigError(
            f"version label +{label} names torch {named_torch} with CUDA {m.group(1)}, but the build uses torch "
            f"{torch_version} (CUDA {torch_cuda}): install that torch first, or fix the label"
        )


def full_version(base: str, label: Optional[str]) -> str:
    return f"{base}+{label}" if label else base


def read_base_version(version_file_text: str) -> str:
    m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", version_file_text, re.MULTILINE)
    if not m:
        raise BuildConfigError("sageattention/_version.py has no __version__ = '...' line")
    return m.group(1)


def render_build_info(info: Mapping) -> str:
    """Source of sageattention/_build_info.py: one literal dict, readable without importing torch."""
    lines = ['"""What setup.py built (written at build time; regenerate by rebuilding, never by hand)."""', "",
             "BUILD_INFO = {"]
    lines += [f"    {key!r}: {value!r}," for key, value in info.items()]
    lines += ["}", ""]
    return "\n".join(lines)
