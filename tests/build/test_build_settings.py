"""Environment settings of the build: flags, counts, version labels, the build record (CPU only)."""

from __future__ import annotations

import pytest

from sageattention._build_support import (
    BuildConfigError, check_label, env_flag, env_flags, env_positive_int, local_version, read_base_version,
    render_build_info,
)


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_env_flag(value, expected):
    assert env_flag({"SAGEATTN_SKIP_CUDA_BUILD": value}, "SAGEATTN_SKIP_CUDA_BUILD") is expected


def test_env_flag_rejects_other_words():
    with pytest.raises(BuildConfigError, match="SAGEATTN_SKIP_CUDA_BUILD='maybe' is not a boolean"):
        env_flag({"SAGEATTN_SKIP_CUDA_BUILD": "maybe"}, "SAGEATTN_SKIP_CUDA_BUILD")


@pytest.mark.parametrize("bad", ["0", "-2", "four", "2.5"])
def test_positive_int_rejects(bad):
    with pytest.raises(BuildConfigError, match=f"EXT_PARALLEL='{bad}' is not a positive integer"):
        env_positive_int({"EXT_PARALLEL": bad}, "EXT_PARALLEL", 1)


def test_positive_int_default_and_value():
    assert env_positive_int({}, "MAX_JOBS", 3) == 3
    assert env_positive_int({"MAX_JOBS": " 8 "}, "MAX_JOBS", 3) == 8


def test_append_flags_split_like_a_shell():
    assert env_flags({"CXX_APPEND_FLAGS": "-O2 '-DNAME=a b'"}, "CXX_APPEND_FLAGS") == ["-O2", "-DNAME=a b"]
    with pytest.raises(BuildConfigError, match="CXX_APPEND_FLAGS cannot be split"):
        env_flags({"CXX_APPEND_FLAGS": "-DX='unclosed"}, "CXX_APPEND_FLAGS")


def test_local_version_from_environment():
    assert local_version({"SAGEATTN_LOCAL_VERSION": "cu129torch2.8.0"}) == "cu129torch2.8.0"
    assert local_version({}) is None


def test_local_version_rejects_non_pep440():
    with pytest.raises(BuildConfigError, match="SAGEATTN_LOCAL_VERSION='cu129-torch2.8' is not a PEP 440 local label"):
        local_version({"SAGEATTN_LOCAL_VERSION": "cu129-torch2.8"})


def test_fork_variables_name_the_wheel_like_the_conda_derived_ones():
    env = {"CUDA_MINOR_VERSION": "8", "TORCH_MINOR_VERSION": "7", "TORCH_PATCH_VERSION": "0"}
    assert local_version(env) == "cu128torch2.7.0"
    assert local_version({"CUDA_MINOR_VERSION": "0", "TORCH_MINOR_VERSION": "10"}, cuda_major=13) == "cu130torch2.10.0"
    assert local_version({**env, "CUDA_MAJOR_VERSION": "13", "CUDA_MINOR_VERSION": "0"}) == "cu130torch2.7.0"
    assert local_version({**env, "SAGEATTN_LOCAL_VERSION": "custom1"}) == "custom1"


def test_fork_variables_need_both_minors():
    with pytest.raises(BuildConfigError, match="TORCH_MINOR_VERSION is unset"):
        local_version({"CUDA_MINOR_VERSION": "8"})


def test_label_must_name_the_torch_and_cuda_built_against():
    check_label("cu129torch2.8.0", "2.8.0+cu129", "12.9")
    check_label("anything.else", "2.8.0", "12.9")
    with pytest.raises(BuildConfigError, match=r"names torch 2.8.0 with CUDA 129, but the build uses torch 2.9.1"):
        check_label("cu129torch2.8.0", "2.9.1+cu129", "12.9")
    with pytest.raises(BuildConfigError, match=r"CUDA 13.0\)"):
        check_label("cu129torch2.8.0", "2.8.0", "13.0")


def test_base_version_read_without_import():
    assert read_base_version('"""doc"""\n\n__version__ = "2.2.0"\n') == "2.2.0"
    with pytest.raises(BuildConfigError):
        read_base_version("VERSION = 1")


def test_build_record_round_trips():
    info = {"version": "2.2.0+x", "modules": {"_C_sm80": {"built": True, "archs": ["8.0", "9.0a"]}},
            "skip_reason": None, "cxx11_abi": 1}
    scope = {}
    exec(render_build_info(info), scope)
    assert scope["BUILD_INFO"] == info
