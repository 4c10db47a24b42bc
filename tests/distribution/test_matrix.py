"""recipe/recipe.yaml x variants.yaml: every variant renders offline, skip rules follow conda-forge's
pytorch builds, build strings encode the variant, and the README table is the generated one."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("rattler_build", reason='pip install -e ".[dist]"')

from buildtools import PLATFORMS, REPO, BuildToolError, matrix, package_version  # noqa: E402


def published(platform: str, cuda: str, torch: str) -> bool:
    """conda-forge CUDA pytorch builds (design.md §4): linux-64 2.7.1-2.9 -> 12.9, 2.10-2.13 -> 12.9 and
    13.0 (12.6 up to 2.7.0); CUDA 12.8 builds exist on win-64 only."""
    minor = tuple(int(p) for p in torch.split("."))
    if platform == "linux-64":
        return (cuda == "12.9" and minor >= (2, 8)) or (cuda == "13.0" and minor >= (2, 10)) or \
            (cuda == "12.6" and minor <= (2, 7))
    return platform == "win-64" and cuda == "12.8"


@pytest.fixture(scope="module")
def variants():
    return matrix.render()


def test_every_platform_renders_offline(variants):
    assert {v.platform for v in variants} == set(PLATFORMS)
    assert all(v.version == package_version() for v in variants)


def test_every_variant_is_a_published_pytorch_cuda_pair(variants):
    unpublished = [v.id for v in variants if not published(v.platform, v.cuda, v.pytorch)]
    assert not unpublished


def test_skip_rules_drop_exactly_the_unpublished_pairs():
    """Cross every CUDA with every torch: what survives build.skip is what conda-forge publishes."""
    cross = {"cuda_compiler_version": ["12.8", "12.9", "13.0"], "pytorch": ["2.8", "2.9", "2.10", "2.13"],
             "python": ["3.12"]}
    kept = {(v.platform, v.cuda, v.pytorch) for v in matrix.render(overrides=cross)}
    expected = {(p, c, t) for p in PLATFORMS for c in cross["cuda_compiler_version"] for t in cross["pytorch"]
                if published(p, c, t)}
    assert kept == expected


def test_each_pair_builds_for_python_3_10_to_3_13(variants):
    pythons: dict = {}
    for v in variants:
        pythons.setdefault((v.platform, v.cuda, v.pytorch), set()).add(v.python)
    assert all(found == {"3.10", "3.11", "3.12", "3.13"} for found in pythons.values())


def test_build_strings_are_unique_and_encode_the_variant(variants):
    assert len({v.build_string for v in variants}) == len(variants)
    for v in variants:
        match = re.fullmatch(r"cuda(\d+)_torch(\d+)_py(\d+)_h[0-9a-f]{7}_0", v.build_string)
        assert match, v.build_string
        assert match.groups() == (v.cuda.replace(".", ""), v.pytorch.replace(".", ""), v.python.replace(".", ""))


def test_arch_lists_cover_every_x86_gpu_with_a_cuda_kernel(variants):
    from sageattention.dispatch import DISPATCH_TABLE

    arm_only = {(8, 7), (12, 1)}  # Jetson Orin and GB10 SoCs: no linux-64/win-64 build serves them
    cuda_kernels = {cap for cap, chain in DISPATCH_TABLE.items() if chain[0] != "triton"} - arm_only
    for v in variants:
        archs = v.arch_list.split(";")
        assert archs[-1].endswith("+PTX"), v.arch_list
        listed = {tuple(int(x) for x in a.removesuffix("+PTX").split(".")) for a in archs}
        assert cuda_kernels <= listed, (v.id, sorted(cuda_kernels - listed))
        if v.cuda.startswith("13"):
            assert min(listed) >= (7, 5), "CUDA 13 dropped everything below sm_75"


def _rendered(variant) -> dict:
    return variant.rendered.recipe.to_dict()


def test_requirements_follow_conda_forge_conventions(variants):
    for v in variants:
        req = _rendered(v)["requirements"]
        assert any(dep.startswith("cuda-nvcc_") for dep in req["build"]), v.id
        assert {"pytorch", "pytorch * cuda*", f"cuda-version {v.cuda}.*", "cuda-cudart-dev"} <= set(req["host"])
        assert ("cuda-driver-dev" in req["host"]) == (v.platform == "linux-64")
        assert "pytorch * cuda*" in req["run"]
        pins = {d["pin_compatible"]["name"]: d["pin_compatible"] for d in req["run"] if isinstance(d, dict)}
        assert pins["cuda-version"]["upper_bound"] == "x" and pins["pytorch"]["upper_bound"] == "x.x"
        assert ("triton" in req["run"]) == (v.platform == "linux-64")


def _site_package_checks(variant) -> list:
    tests = _rendered(variant)["tests"]
    return next(t["package_contents"]["site_packages"] for t in tests if "package_contents" in t)


def test_package_contents_check_the_modules_the_arch_list_implies(variants, monkeypatch):
    full = _site_package_checks(variants[0])
    assert {f"sageattention/_C_{m}.*" for m in ("quant", "sm80", "sm89", "sm90")} <= set(full)
    monkeypatch.setenv("SAGEATTN_CUDA_ARCH_LIST", "8.9")
    (narrow,) = matrix.render(platforms=("linux-64",), overrides={"python": ["3.12"], "pytorch": ["2.8"]})
    assert narrow.arch_list == "8.9"
    assert "sageattention/_C_sm90.*" not in _site_package_checks(narrow)
    assert "sageattention/_C_sm89.*" in _site_package_checks(narrow)


def test_cpu_variant_has_no_cuda_requirements():
    overrides = {"cuda_compiler_version": ["None"], "pytorch": ["2.13"], "python": ["3.11"]}
    (cpu,) = matrix.render(platforms=("linux-64",), overrides=overrides)
    req = _rendered(cpu)["requirements"]
    assert cpu.build_string.startswith("cpu_torch213_py311_h")
    assert not [d for d in req["build"] + req["host"] if "cuda" in str(d)]
    assert "sageattention/_C_quant.*" not in _site_package_checks(cpu)


def test_readme_table_is_the_generated_one(variants):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert matrix.table_in_readme(readme) == matrix.markdown(variants), \
        "README matrix is stale: run python scripts/build.py matrix --update-readme"


def test_json_matrix_for_ci(variants):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "build.py"), "matrix", "--json", "--compact"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)["include"]
    assert [r["build_string"] for r in rows] == [v.build_string for v in variants]
    assert {r["runner"] for r in rows} == {"ubuntu-latest", "windows-latest"}
    assert all(f"--variant=pytorch={r['pytorch']}" in r["variant_args"] for r in rows)


def test_selection_that_matches_nothing_says_how_to_list(variants):
    with pytest.raises(BuildToolError, match="build.py matrix"):
        matrix.select(variants, python=["3.9"])


def test_malformed_override_is_a_one_line_error():
    with pytest.raises(BuildToolError, match="KEY=V1"):
        matrix.parse_overrides(["python"])
