"""setup.py's plan: which modules compile for which archs, and its errors (CPU only, nothing compiled)."""

from __future__ import annotations

import pytest


def every_folder_has_sources(folder):
    return [f"{folder}/ops.cpp", f"{folder}/kernel.cu"]


def test_no_list_no_gpu_is_a_clear_error(setup_module, bs):
    with pytest.raises(bs.BuildConfigError, match="TORCH_CUDA_ARCH_LIST is unset and no GPU is visible.*SAGEATTN_SKIP_CUDA_BUILD=1"):
        setup_module.requested_archs({}, [])


def test_visible_gpus_when_no_list(setup_module, bs):
    archs, source = setup_module.requested_archs({}, [(9, 0), (8, 9), (9, 0)])
    assert [str(a) for a in archs] == ["8.9", "9.0"] and "visible GPUs" in source


def test_list_wins_over_gpus(setup_module, bs):
    archs, source = setup_module.requested_archs({"TORCH_CUDA_ARCH_LIST": "8.0"}, [(9, 0)])
    assert [str(a) for a in archs] == ["8.0"] and source == "8.0"


def test_mixed_list_plans_each_module(setup_module, bs):
    plan, modules = setup_module.plan_modules(bs.parse_arch_list("8.0;9.0;12.0"), (12, 8), every_folder_has_sources)
    assert {spec.short_name: [str(a) for a in archs] for spec, archs, _ in plan} == {
        "_C_quant": ["8.0", "9.0", "12.0"], "_C_sm80": ["8.0", "9.0", "12.0"],
        "_C_sm89": ["9.0", "12.0"], "_C_sm90": ["9.0a"],
    }
    assert all(entry["built"] for entry in modules.values())


def test_unserved_module_is_recorded_with_the_fix(setup_module, bs):
    plan, modules = setup_module.plan_modules(bs.parse_arch_list("8.0"), (12, 8), every_folder_has_sources)
    assert [spec.short_name for spec, _, _ in plan] == ["_C_quant", "_C_sm80"]
    assert modules["_C_sm90"] == {"built": False, "reason": "TORCH_CUDA_ARCH_LIST=8.0 has no arch it serves (9.0a): rebuild with one added"}
    assert ">= 8.9" in modules["_C_sm89"]["reason"]


def test_folder_without_sources_is_skipped(setup_module, bs):
    def only_quant(folder):
        return every_folder_has_sources(folder) if folder.endswith("quant") else []

    plan, modules = setup_module.plan_modules(bs.parse_arch_list("8.9"), (12, 8), only_quant)
    assert [spec.short_name for spec, _, _ in plan] == ["_C_quant"]
    assert modules["_C_sm80"] == {"built": False, "reason": "csrc/sm80 had no sources"}


def test_list_below_ampere_is_an_error(setup_module, bs):
    with pytest.raises(bs.BuildConfigError, match="has no arch >= 8.0"):
        setup_module.plan_modules(bs.parse_arch_list("7.5;7.0"), (12, 8), every_folder_has_sources)


def test_old_nvcc_stops_the_plan(setup_module, bs):
    with pytest.raises(bs.BuildConfigError, match=r"nvcc 12.2 is too old for sm_89 in sageattention._C_sm89 \(the FP8 e4m3 mma"):
        setup_module.plan_modules(bs.parse_arch_list("8.0;8.9"), (12, 2), every_folder_has_sources)


def test_modules_table_matches_the_dispatch_backends(setup_module, bs):
    from sageattention.dispatch import BACKENDS

    cuda_backends = {name for name in BACKENDS if name.startswith("sm")}
    assert {spec.short_name for spec in setup_module.EXTENSIONS} == {"_C_quant"} | {f"_C_{n}" for n in cuda_backends}
