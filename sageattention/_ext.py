"""Loads the compiled modules (sageattention._C_*) and says exactly why one cannot be used.

Nothing here runs at ``import sageattention``. ``load(name)`` compares the build record
(sageattention/_build_info.py, written by setup.py) with the running torch before importing, so a mismatch is
reported as such instead of an ``undefined symbol`` or a crash; results are cached, so the hot path is a dict
lookup. A module that was built but cannot be used warns once.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Optional

import torch

from ._build_support import runs_on

REBUILD = "pip install --no-build-isolation --force-reinstall --no-deps . (in a sageattention clone)"


class ExtensionUnavailable(ImportError):
    """A compiled module cannot be used here; the message says why and how to fix it."""


class ExtensionWarning(RuntimeWarning):
    """A compiled module that was built cannot be used; sageattn falls back to another kernel."""


_MISSING = object()
_record_cache = _MISSING
_loaded: dict = {}  # name -> module, or the reason string it is unavailable
_arch_checked: dict = {}  # (name, capability) -> None or reason
_warned: set = set()


def _record() -> Optional[dict]:
    """The build record, or None when this installation has none (a source tree never built)."""
    global _record_cache
    if _record_cache is _MISSING:
        try:
            from ._build_info import BUILD_INFO
        except ImportError:
            BUILD_INFO = None
        _record_cache = BUILD_INFO
    return _record_cache


def build_info() -> Optional[dict]:
    """What setup.py compiled (torch, CUDA, compilers, archs per module), or None when no CUDA module was built."""
    record = _record()
    return record if record and record.get("cuda_extension") else None


def _not_built_reason() -> str:
    record = _record()
    why = record.get("skip_reason") if record else "no build record: a source tree that was never built"
    return (f"sageattention was installed without the CUDA extension ({why}); reinstall with torch and nvcc "
            f"present: TORCH_CUDA_ARCH_LIST=<your GPU's arch, e.g. 8.9> {REBUILD}")


def _torch_mismatch(record: dict) -> Optional[str]:
    built = (record["torch"], record.get("torch_cuda"), record.get("cxx11_abi"))
    running = (torch.__version__, torch.version.cuda, int(torch.compiled_with_cxx11_abi()))
    same_torch = built[0].split("+")[0].split(".")[:2] == running[0].split("+")[0].split(".")[:2]
    same_cuda = (built[1] or "").split(".")[:1] == (running[1] or "").split(".")[:1]
    if same_torch and same_cuda and built[2] == running[2]:
        return None
    return (f"it was built for torch {built[0]} (CUDA {built[1]}, cxx11 ABI {built[2]}) but torch {running[0]} "
            f"(CUDA {running[1]}, cxx11 ABI {running[2]}) is running: rebuild with {REBUILD}, or install the "
            f"sageattention wheel built for torch {running[0].split('+')[0]}")


def _explain_import_error(name: str, exc: BaseException, record: dict) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ModuleNotFoundError) and exc.name == f"sageattention.{name}":
        return (f"the build record lists sageattention.{name} but its file is missing (running from a source tree "
                f"after a non-editable install?): pip install --no-build-isolation -e . builds it in place")
    if "undefined symbol" in text or "cannot open shared object" in text:
        return (f"sageattention.{name} failed to load ({text}): it was built against torch {record['torch']} "
                f"(CUDA {record.get('torch_cuda')}) and the libraries it links to differ now (running torch "
                f"{torch.__version__}, CUDA {torch.version.cuda}); rebuild with {REBUILD}")
    return f"sageattention.{name} failed to load: {type(exc).__name__}: {text}"


def _try_import(name: str):
    """The module, or the reason string it cannot be used."""
    record = build_info()
    if record is None:
        return _not_built_reason()
    entry = record.get("modules", {}).get(name)
    if entry is None:
        return f"sageattention has no compiled module {name} (known: {', '.join(record.get('modules', {}))})"
    if not entry.get("built"):
        return f"sageattention.{name} was not built: {entry.get('reason')}"
    mismatch = _torch_mismatch(record)
    if mismatch:  # importing across a torch ABI change can crash, so it is not attempted
        return _warn(name, f"sageattention.{name} is unusable: {mismatch}")
    try:
        return importlib.import_module(f"sageattention.{name}")
    except (ImportError, OSError) as exc:
        return _warn(name, _explain_import_error(name, exc, record))


def _warn(key, reason: str) -> str:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"{reason} (sageattn falls back to another kernel)", ExtensionWarning, stacklevel=3)
    return reason


def _arch_reason(name: str, capability: tuple) -> Optional[str]:
    archs = build_info()["modules"][name]["archs"]
    if runs_on(archs, capability):
        return None
    sm = f"sm_{capability[0]}{capability[1]}"
    built = ",".join(f"sm_{a.replace('.', '')}" for a in archs)
    return _warn((name, capability), (
        f"sageattention.{name} was built for {built}; this GPU is {sm}: rebuild with "
        f"TORCH_CUDA_ARCH_LIST={capability[0]}.{capability[1]} {REBUILD}"))


_capabilities: dict = {}  # device index -> (major, minor)


def _capability(device) -> tuple:
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    cap = _capabilities.get(index)
    if cap is None:
        cap = _capabilities[index] = tuple(torch.cuda.get_device_capability(index))
    return cap


def load(name: str, device=None):
    """The compiled module `name` (e.g. "_C_sm80"), checked to have code for `device`'s GPU when one is given.

    Raises ExtensionUnavailable with a one-line reason and fix."""
    result = _loaded.get(name)
    if result is None:
        result = _loaded[name] = _try_import(name)
    if isinstance(result, str):
        raise ExtensionUnavailable(result)
    if device is not None:
        key = (name, _capability(device))
        if key not in _arch_checked:
            _arch_checked[key] = _arch_reason(name, key[1])
        if _arch_checked[key]:
            raise ExtensionUnavailable(_arch_checked[key])
    return result


def status(device=None) -> dict:
    """For `python -m sageattention info`: each module -> "loaded (archs)" or why it cannot be used."""
    record = build_info()
    if record is None:
        return {"CUDA extension": _not_built_reason()}
    if device is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    out = {}
    for name, entry in record.get("modules", {}).items():
        try:
            load(name, device)
            out[name] = f"loaded (built for {', '.join(entry['archs'])})"
        except ExtensionUnavailable as exc:
            out[name] = str(exc)
    return out


def summary() -> str:
    """One line describing the build, for `info`."""
    record = build_info()
    if record is None:
        return f"pure Python: {_not_built_reason()}"
    label = f", label +{record['local_version']}" if record.get("local_version") else ""
    return (f"torch {record['torch']} (CUDA {record.get('torch_cuda')}, cxx11 ABI {record.get('cxx11_abi')}), "
            f"nvcc {record.get('nvcc')}, {record.get('cxx')}, TORCH_CUDA_ARCH_LIST={record.get('arch_list')}{label}")


def _reset_for_tests(record=_MISSING) -> None:
    """Forget cached results (and optionally substitute a build record); tests only."""
    global _record_cache
    _record_cache = record
    _loaded.clear()
    _arch_checked.clear()
    _warned.clear()
