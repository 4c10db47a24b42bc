"""Builds sageattention's CUDA extension modules, one per kernel family, each with only its own gencodes.

Without torch in the build environment (pip's default isolated build), without a CUDA build of torch, without
nvcc, or with SAGEATTN_SKIP_CUDA_BUILD=1, it installs the pure-Python package (Triton kernels and the PyTorch
reference) and records why in sageattention/_build_info.py. Settings (README, "Building from source"):
TORCH_CUDA_ARCH_LIST, MAX_JOBS, EXT_PARALLEL, NVCC_APPEND_FLAGS (read by nvcc itself), CXX_APPEND_FLAGS,
SAGEATTN_LOCAL_VERSION (or the fork's CUDA_MINOR_VERSION / TORCH_MINOR_VERSION / TORCH_PATCH_VERSION).
"""

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()


def _load_support():
    # By path: importing the sageattention package would import torch, which an isolated build lacks.
    spec = importlib.util.spec_from_file_location("_sageattn_build_support", ROOT / "sageattention" / "_build_support.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


bs = _load_support()

# The extension modules: import name, source folder (every *.cu and *.cpp in it), archs served.
EXTENSIONS = (
    bs.ModuleSpec("sageattention._C_quant", "csrc/quant", min_cc=(8, 0)),
    bs.ModuleSpec("sageattention._C_sm80", "csrc/sm80", min_cc=(8, 0)),  # mma.sync code runs on later GPUs too
    bs.ModuleSpec("sageattention._C_sm89", "csrc/sm89", min_cc=(8, 9), min_nvcc=(12, 4),
                  nvcc_reason="the FP8 e4m3 mma"),
    bs.ModuleSpec("sageattention._C_sm90", "csrc/sm90", only_cc=(9, 0), suffix="a", min_nvcc=(12, 3),
                  nvcc_reason="wgmma with INT8/FP8 operands"),
)

NVCC_FLAGS = [
    "-O3", "-DNDEBUG", "-lineinfo", "--use_fast_math", "--expt-relaxed-constexpr", "--expt-extended-lambda",
    # torch's defaults hide the half operators; the kernels use them.
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
]
CXX_FLAGS = ["/O2", "/DNDEBUG"] if os.name == "nt" else ["-O3", "-DNDEBUG"]
INSTALL_HINT = "pip install --no-build-isolation ."


def _sources(folder: str) -> list:
    path = ROOT / folder
    found = sorted(p for p in path.glob("*") if p.suffix in (".cu", ".cpp")) if path.is_dir() else []
    return [str(p.relative_to(ROOT)) for p in found]


def _first_line(cmd: list) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
        return out.strip().splitlines()[0] if out.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def requested_archs(environ, gpu_capabilities) -> tuple:
    """(archs, how they were chosen) from TORCH_CUDA_ARCH_LIST, else the visible GPUs (as torch does)."""
    text = environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if text:
        return bs.parse_arch_list(text), text
    if gpu_capabilities:
        listed = ";".join(f"{a}.{b}" for a, b in sorted(set(gpu_capabilities)))
        return bs.parse_arch_list(listed), f"{listed} (visible GPUs)"
    raise bs.BuildConfigError(
        "no CUDA arch to build for: TORCH_CUDA_ARCH_LIST is unset and no GPU is visible; set e.g. "
        "TORCH_CUDA_ARCH_LIST='8.0;8.9;9.0', or SAGEATTN_SKIP_CUDA_BUILD=1 for the pure-Python package"
    )


def plan_modules(requested, nvcc_version: tuple, sources_of) -> tuple:
    """([(spec, archs, sources)] to compile, {short name: record entry}) for `requested` archs."""
    if not any(a.cc >= (8, 0) for a in requested):
        raise bs.BuildConfigError(
            f"TORCH_CUDA_ARCH_LIST={bs.format_arch_list(requested)} has no arch >= 8.0, the oldest sageattention's "
            "CUDA kernels serve; add one (e.g. 8.0) or set SAGEATTN_SKIP_CUDA_BUILD=1 (Triton kernels only)"
        )
    plan, modules = [], {}
    for spec in EXTENSIONS:
        archs, sources = spec.archs(requested), sources_of(spec.folder)
        if not sources:
            modules[spec.short_name] = {"built": False, "reason": f"{spec.folder} had no sources"}
        elif not archs:
            modules[spec.short_name] = {"built": False, "reason": (
                f"TORCH_CUDA_ARCH_LIST={bs.format_arch_list(requested)} has no arch it serves ({spec.serves()}): "
                "rebuild with one added")}
        else:
            bs.check_nvcc(spec, archs, nvcc_version)
            modules[spec.short_name] = {"built": True, "archs": [str(a) for a in archs]}
            plan.append((spec, archs, sources))
    return plan, modules


def _probe_toolchain(environ):
    """(torch module, nvcc path) or (None, reason the CUDA extension is skipped)."""
    if bs.env_flag(environ, "SAGEATTN_SKIP_CUDA_BUILD"):
        return None, "SAGEATTN_SKIP_CUDA_BUILD=1"
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME
    except ImportError as exc:
        return None, (f"torch was not importable at build time ({exc}; pip's default isolated build has no torch: "
                      f"install torch first, then {INSTALL_HINT})")
    if torch.version.cuda is None:
        return None, f"torch {torch.__version__} at build time was a CPU-only build"
    nvcc = Path(CUDA_HOME or "/nonexistent") / "bin" / ("nvcc.exe" if os.name == "nt" else "nvcc")
    if not nvcc.exists():
        return None, "nvcc was not found at build time (set CUDA_HOME to a CUDA toolkit)"
    if not (Path(CUDA_HOME) / "include" / "cuda_runtime.h").exists():
        raise bs.BuildConfigError(
            f"CUDA_HOME={CUDA_HOME} has nvcc but no include/cuda_runtime.h (nvcc on PATH may be a wrapper): "
            "set CUDA_HOME to the toolkit root, e.g. CUDA_HOME=/usr/local/cuda"
        )
    return torch, str(nvcc)


def _plan(environ):
    """(modules to compile, build record, torch or None). Raises BuildConfigError on settings that cannot work."""
    torch, nvcc = _probe_toolchain(environ)
    info = {"cuda_extension": False, "skip_reason": None}
    if torch is None:
        info["skip_reason"] = nvcc
        return [], info, None
    nvcc_version = bs.parse_nvcc_version(subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout)
    gpus = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    requested, arch_source = requested_archs(environ, gpus)
    plan, modules = plan_modules(requested, bs.parse_version(nvcc_version), _sources)
    info.update(
        cuda_extension=bool(plan), skip_reason=None if plan else "csrc/ had no kernel sources",
        torch=torch.__version__, torch_cuda=torch.version.cuda, cxx11_abi=int(torch.compiled_with_cxx11_abi()),
        nvcc=nvcc_version, cxx=_first_line([environ.get("CXX", "c++"), "--version"]), arch_list=arch_source,
        nvcc_append_flags=environ.get("NVCC_APPEND_FLAGS", ""), cxx_append_flags=environ.get("CXX_APPEND_FLAGS", ""),
        modules=modules,
    )
    return plan, info, torch


def _fallback_header_dirs() -> list:
    """Header folders of the nvidia-* wheels that came with a pip torch, searched after everything else.

    ATen/cuda/CUDAContext.h includes cuSPARSE/cuBLAS headers that a minimal toolkit (nvcc + cudart) lacks."""
    from torch.utils.cpp_extension import CUDA_HOME

    if os.name == "nt" or (Path(CUDA_HOME) / "include" / "cusparse.h").exists():  # MSVC has no -idirafter
        return []
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    return sorted(str(d) for root in roots for d in Path(root).glob("*/include") if "," not in str(d))


def _extensions(plan, environ):
    from torch.utils.cpp_extension import CUDAExtension

    cxx_extra = bs.env_flags(environ, "CXX_APPEND_FLAGS")
    bs.env_flags(environ, "NVCC_APPEND_FLAGS")  # nvcc appends it itself; only its syntax is checked here
    after = _fallback_header_dirs()
    cxx_after = [flag for d in after for flag in ("-idirafter", d)]
    nvcc_after = [f"-Xcompiler=-idirafter,{d}" for d in after]
    return [
        CUDAExtension(
            name=spec.name,
            sources=sources,
            include_dirs=[str(ROOT / "csrc")],
            extra_compile_args={"cxx": CXX_FLAGS + cxx_after + cxx_extra,
                                "nvcc": NVCC_FLAGS + nvcc_after + bs.gencode_flags(archs)},
        )
        for spec, archs, sources in plan
    ]


def _build_ext_class(parallel: int):
    from torch.utils.cpp_extension import BuildExtension

    class ParallelBuildExtension(BuildExtension):
        """Builds up to EXT_PARALLEL modules at once, each in its own temp folder (one build.ninja each)."""

        def finalize_options(self):
            super().finalize_options()
            if parallel > 1:
                self.parallel = parallel

        def build_extension(self, ext):
            worker = copy.copy(self)
            worker.build_temp = os.path.join(self.build_temp, ext.name.rsplit(".", 1)[-1])
            BuildExtension.build_extension(worker, ext)

    return ParallelBuildExtension.with_options(use_ninja=True)


def main():
    environ = os.environ
    try:
        cuda_major = None
        plan, info, torch = _plan(environ)
        if torch is not None:
            cuda_major = bs.parse_version(torch.version.cuda)[0]
        label = bs.local_version(environ, cuda_major)
        if torch is not None:
            bs.check_label(label, torch.__version__, torch.version.cuda)
        parallel = bs.env_positive_int(environ, "EXT_PARALLEL", 1)
        bs.env_positive_int(environ, "MAX_JOBS", 1)  # torch's ninja build reads it; checked here for a clear error
        ext_modules = _extensions(plan, environ) if plan else []
    except bs.BuildConfigError as exc:
        sys.exit(f"sageattention build: {exc}")
    version = bs.full_version(bs.read_base_version((ROOT / "sageattention" / "_version.py").read_text()), label)
    info = {"version": version, "local_version": label, **info}
    (ROOT / "sageattention" / "_build_info.py").write_text(bs.render_build_info(info))
    if not ext_modules:
        print(f"sageattention build: pure-Python package ({info['skip_reason']})", file=sys.stderr)
    setup(
        version=version,
        ext_modules=ext_modules,
        cmdclass={"build_ext": _build_ext_class(parallel)} if ext_modules else {},
    )


if __name__ == "__main__":
    main()
