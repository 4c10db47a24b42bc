"""TORCH_CUDA_ARCH_LIST parsing, per-module gencodes, nvcc minimums and GPU compatibility (CPU only).

Tests that use setup.py's module table use `bs`, the copy of _build_support that setup.py loaded by path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sageattention._build_support import Arch, BuildConfigError, parse_arch_list, runs_on


def specs(setup_module):
    return {spec.short_name: spec for spec in setup_module.EXTENSIONS}


def test_separators_mix_and_order():
    assert parse_arch_list("9.0 8.0;8.9,8.6") == (Arch(8, 0), Arch(8, 6), Arch(8, 9), Arch(9, 0))


@pytest.mark.parametrize("text, expected", [
    ("sm_90a", Arch(9, 0, "a")),
    ("9.0a", Arch(9, 0, "a")),
    ("SM_120", Arch(12, 0)),
    ("sm_121a", Arch(12, 1, "a")),
    ("10.0f", Arch(10, 0, "f")),
    ("12.0+PTX", Arch(12, 0, "", True)),
    ("sm_86+ptx", Arch(8, 6, "", True)),
])
def test_entry_forms(text, expected):
    assert parse_arch_list(text) == (expected,)


def test_duplicates_merge_and_keep_ptx():
    assert parse_arch_list("8.0;8.0+PTX 8.0") == (Arch(8, 0, "", True),)


def test_named_arch_like_torch():
    assert parse_arch_list("Hopper") == (Arch(9, 0, "", True),)


@pytest.mark.parametrize("bad", ["8.x", "sm_9", "ampere2", "8.0.1", "90"])
def test_bad_entry_names_entry_and_forms(bad):
    with pytest.raises(BuildConfigError, match=f"TORCH_CUDA_ARCH_LIST entry '{bad}'.*9.0a"):
        parse_arch_list(f"8.0;{bad}")


arch_st = st.builds(Arch, st.integers(8, 12), st.integers(0, 9), st.sampled_from(["", "a"]), st.booleans())


@given(st.lists(arch_st, min_size=1, max_size=6), st.data())
def test_any_spelling_parses_back(archs, data):
    spelled = []
    for a in archs:
        base = data.draw(st.sampled_from([f"{a.major}.{a.minor}{a.suffix}", f"sm_{a.major}{a.minor}{a.suffix}"]))
        spelled.append(base + ("+PTX" if a.ptx else ""))
    seps = data.draw(st.lists(st.sampled_from([";", ",", " ", " ; "]), min_size=len(spelled), max_size=len(spelled)))
    text = "".join(s + sep for s, sep in zip(spelled, seps))
    parsed = parse_arch_list(text)
    assert {(a.cc, a.suffix) for a in parsed} == {(a.cc, a.suffix) for a in archs}
    for a in parsed:
        assert a.ptx == any(b.ptx for b in archs if (b.cc, b.suffix) == (a.cc, a.suffix))


def test_mixed_hopper_blackwell_list_gives_each_module_only_its_gencodes(setup_module, bs):
    # Upstream passes one flag list to every module, so "9.0;12.0" fails there.
    m = specs(setup_module)
    requested = bs.parse_arch_list("9.0;12.0+PTX")
    assert bs.gencode_flags(m["_C_sm90"].archs(requested)) == ["-gencode=arch=compute_90a,code=sm_90a"]
    assert bs.gencode_flags(m["_C_sm89"].archs(requested)) == [
        "-gencode=arch=compute_90,code=sm_90",
        "-gencode=arch=compute_120,code=sm_120",
        "-gencode=arch=compute_120,code=compute_120",
    ]
    assert m["_C_sm80"].archs(requested) == m["_C_quant"].archs(requested) == requested


def test_ampere_only_list_builds_no_fp8_or_hopper_module(setup_module, bs):
    m = specs(setup_module)
    requested = bs.parse_arch_list("8.0 8.6")
    assert m["_C_sm89"].archs(requested) == () and m["_C_sm90"].archs(requested) == ()
    assert [str(a) for a in m["_C_sm80"].archs(requested)] == ["8.0", "8.6"]


def test_hopper_module_never_gets_ptx_or_plain_target(setup_module, bs):
    sm90 = specs(setup_module)["_C_sm90"]
    assert sm90.archs(bs.parse_arch_list("9.0+PTX;9.0a")) == (bs.Arch(9, 0, "a"),)


@pytest.mark.parametrize("module, archs, nvcc, needed", [
    ("_C_sm89", "8.9", (12, 3), "12.4"),
    ("_C_sm90", "9.0", (12, 2), "12.3"),
    ("_C_sm80", "12.0", (12, 6), "12.8"),
    ("_C_quant", "12.1", (12, 8), "12.9"),
])
def test_nvcc_too_old_names_arch_version_and_fix(setup_module, bs, module, archs, nvcc, needed):
    spec = specs(setup_module)[module]
    with pytest.raises(bs.BuildConfigError) as err:
        bs.check_nvcc(spec, spec.archs(bs.parse_arch_list(archs)), nvcc)
    msg = str(err.value)
    assert f"nvcc {nvcc[0]}.{nvcc[1]} is too old" in msg and f">= {needed}" in msg and archs in msg
    assert "\n" not in msg


def test_nvcc_new_enough_for_the_feedstock_list(setup_module, bs):
    requested = bs.parse_arch_list("8.0;8.6;8.9;9.0;10.0;12.0+PTX")
    for spec in setup_module.EXTENSIONS:
        bs.check_nvcc(spec, spec.archs(requested), (12, 8))


@pytest.mark.parametrize("built, cap, ok", [
    (["8.0"], (8, 6), True),
    (["8.0"], (8, 9), True),
    (["8.6"], (8, 0), False),
    (["8.0"], (9, 0), False),
    (["9.0a"], (9, 0), True),
    (["9.0a"], (10, 0), False),
    (["8.0+PTX"], (12, 0), True),
    (["12.0"], (12, 1), True),
    (["12.0"], (10, 0), False),
    (["9.0", "12.0"], (8, 9), False),
])
def test_runs_on(built, cap, ok):
    assert runs_on(built, cap) is ok
