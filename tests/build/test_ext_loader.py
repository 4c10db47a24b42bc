"""sageattention._ext: why a compiled module cannot be used, said once and precisely (CPU only: records are
substituted and the import is stubbed, so every failure mode is exercised without a compiler or GPU)."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from sageattention import _ext


def record(**overrides):
    info = {
        "version": "2.2.0", "local_version": None, "cuda_extension": True, "skip_reason": None,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda or "13.0",
        "cxx11_abi": int(torch.compiled_with_cxx11_abi()), "nvcc": "13.0.88", "cxx": "c++ 12", "arch_list": "8.0",
        "modules": {"_C_sm80": {"built": True, "archs": ["8.0"]},
                    "_C_sm90": {"built": False, "reason": "TORCH_CUDA_ARCH_LIST=8.0 has no arch it serves (9.0a)"}},
    }
    info.update(overrides)
    return info


@pytest.fixture
def fake_import(monkeypatch):
    """Stub for the import of sageattention._C_*: counts calls, returns a module or raises `error`."""
    state = types.SimpleNamespace(calls=0, error=None, module=types.ModuleType("sageattention._C_sm80"))

    def import_module(name):
        state.calls += 1
        if state.error is not None:
            raise state.error
        return state.module

    monkeypatch.setattr(_ext.importlib, "import_module", import_module)
    monkeypatch.setattr(torch.version, "cuda", torch.version.cuda or "13.0")  # CPU wheels report None
    yield state
    _ext._reset_for_tests()


def use(info):
    _ext._reset_for_tests(info)


def reason_of(name, device=None):
    with pytest.raises(_ext.ExtensionUnavailable) as err:
        _ext.load(name, device)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_no_build_record(fake_import):
    use(None)
    msg = reason_of("_C_sm80")
    assert "installed without the CUDA extension" in msg and "--no-build-isolation" in msg
    assert _ext.build_info() is None and fake_import.calls == 0
    assert list(_ext.status().values()) == [_ext.status()["CUDA extension"]]


def test_pure_python_build_says_why(fake_import):
    use(record(cuda_extension=False, skip_reason="SAGEATTN_SKIP_CUDA_BUILD=1", modules={}))
    assert "(SAGEATTN_SKIP_CUDA_BUILD=1)" in reason_of("_C_sm80")
    assert _ext.build_info() is None


def test_module_not_built_for_these_archs(fake_import):
    use(record())
    assert reason_of("_C_sm90") == "sageattention._C_sm90 was not built: TORCH_CUDA_ARCH_LIST=8.0 has no arch it serves (9.0a)"


def test_other_torch_minor_is_refused_before_import_and_warns_once(fake_import):
    use(record(torch="1.13.1+cu117"))
    with pytest.warns(_ext.ExtensionWarning, match="built for torch 1.13.1"):
        msg = reason_of("_C_sm80")
    assert f"torch {torch.__version__}" in msg and "rebuild with pip install --no-build-isolation" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reason_of("_C_sm80")  # second call: same reason, no second warning
    assert fake_import.calls == 0


def test_other_abi_is_refused(fake_import):
    use(record(cxx11_abi=1 - int(torch.compiled_with_cxx11_abi())))
    with pytest.warns(_ext.ExtensionWarning):
        assert "cxx11 ABI" in reason_of("_C_sm80")


def test_patch_release_of_same_torch_is_accepted(fake_import):
    base = torch.__version__.split("+")[0].split(".")
    use(record(torch=".".join(base[:2] + ["99"])))
    assert _ext.load("_C_sm80") is fake_import.module


def test_undefined_symbol_is_explained(fake_import):
    use(record())
    fake_import.error = ImportError("/site/sageattention/_C_sm80.so: undefined symbol: _ZN3c1017RegisterOperators")
    with pytest.warns(_ext.ExtensionWarning):
        msg = reason_of("_C_sm80")
    assert msg.startswith("sageattention._C_sm80 failed to load (") and "undefined symbol" in msg
    assert f"built against torch {torch.__version__}" in msg and "rebuild with" in msg


def test_missing_file_points_at_in_place_build(fake_import):
    use(record())
    fake_import.error = ModuleNotFoundError("No module named 'sageattention._C_sm80'", name="sageattention._C_sm80")
    with pytest.warns(_ext.ExtensionWarning):
        assert "its file is missing" in reason_of("_C_sm80")


def test_other_loader_errors_are_passed_through(fake_import):
    use(record())
    fake_import.error = OSError("libcudart.so.13: cannot map segment")
    with pytest.warns(_ext.ExtensionWarning):
        assert reason_of("_C_sm80") == "sageattention._C_sm80 failed to load: OSError: libcudart.so.13: cannot map segment"


def test_success_is_cached(fake_import):
    use(record())
    assert _ext.load("_C_sm80") is fake_import.module
    assert _ext.load("_C_sm80") is fake_import.module
    assert fake_import.calls == 1


@pytest.mark.parametrize("cap, ok", [((8, 0), True), ((8, 9), True), ((9, 0), False)])
def test_gpu_arch_check(fake_import, monkeypatch, cap, ok):
    use(record())
    monkeypatch.setattr(_ext, "_capability", lambda device: cap)
    if ok:
        assert _ext.load("_C_sm80", "cuda:0") is fake_import.module
        return
    with pytest.warns(_ext.ExtensionWarning):
        msg = reason_of("_C_sm80", "cuda:0")
    assert msg.startswith("sageattention._C_sm80 was built for sm_80; this GPU is sm_90: rebuild with TORCH_CUDA_ARCH_LIST=9.0")


def test_status_lists_every_recorded_module(fake_import):
    use(record())
    status = _ext.status()
    assert status["_C_sm80"] == "loaded (built for 8.0)"
    assert status["_C_sm90"].startswith("sageattention._C_sm90 was not built")
    assert "TORCH_CUDA_ARCH_LIST=8.0" in _ext.summary()
