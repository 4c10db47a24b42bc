"""`build.py cibuildwheel`: the [tool.cibuildwheel] configuration, the entry from the fork's variables, wheel
names identical to the conda-derived ones (cibuildwheel runs offline here: --print-build-identifiers)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from buildtools import BuildToolError  # noqa: E402
from buildtools import cibuildwheel as cibw  # noqa: E402

pytest.importorskip("cibuildwheel", reason="pip install cibuildwheel==4.3.5 (the dist extra)")

FORK = {"TORCH_MINOR_VERSION": "7", "TORCH_PATCH_VERSION": "0", "CUDA_MINOR_VERSION": "8"}


def identifiers(platform: str, pythons=(), environ=None) -> set:
    target = cibw.resolve_target("2.7.0", "12.8", pythons, environ or {})
    cmd, env = cibw.cibuildwheel_command(target, platform, Path("unused"), print_only=True, environ=environ or {})
    env = {**env, "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_linux_identifiers_are_the_four_cpythons_on_manylinux():
    assert identifiers("linux") == {f"cp3{m}-manylinux_x86_64" for m in (10, 11, 12, 13)}


def test_windows_identifiers():
    assert identifiers("windows") == {f"cp3{m}-win_amd64" for m in (10, 11, 12, 13)}


def test_python_selection_narrows_the_build():
    assert identifiers("linux", ("3.12",)) == {"cp312-manylinux_x86_64"}


def test_configuration_keeps_no_build_isolation_and_the_torch_excludes():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert config["build-frontend"] == {"name": "pip", "args": ["--no-build-isolation"]}
    assert config["linux"]["manylinux-x86_64-image"] == "manylinux_2_28"
    repair = config["linux"]["repair-wheel-command"]
    for lib in ("libtorch*", "libc10*", "libcudart*", "libcuda.so*"):
        assert f"--exclude '{lib}'" in repair
    assert set(FORK) | {"TORCH_CUDA_ARCH_LIST", "EXT_PARALLEL"} <= set(config["environment-pass"])
    for script in ("docker/install-torch.sh", "docker/install-cuda-toolkit.sh", "docker/check-built-modules.py"):
        assert (REPO / script).is_file()


def test_fork_variables_give_the_conda_wheel_name():
    target = cibw.resolve_target(None, None, ("3.12",), FORK)
    assert (target.torch, target.cuda, target.label) == ("2.7.0", "12.8", "cu128torch2.7.0")
    assert target.wheel_name("3.12", "linux") == "sageattention-2.2.0+cu128torch2.7.0-cp312-cp312-linux_x86_64.whl"
    env = target.environment({"EXT_PARALLEL": "4"})
    assert env["SAGEATTN_LOCAL_VERSION"] == "cu128torch2.7.0" and env["EXT_PARALLEL"] == "4"
    assert env["SAGEATTN_TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu128"


def test_cuda13_from_fork_variables():
    target = cibw.resolve_target(None, None, (), {"TORCH_MINOR_VERSION": "9", "CUDA_MAJOR_VERSION": "13",
                                                  "CUDA_MINOR_VERSION": "0"})
    assert target.label == "cu130torch2.9.0" and target.pythons == cibw.PYTHONS


def test_arch_list_the_toolkit_cannot_build_is_refused_before_any_build():
    with pytest.raises(BuildToolError, match="CUDA 12.6 with TORCH_CUDA_ARCH_LIST=8.0;12.0: nvcc 12.6 is too old for sm_120"):
        cibw.resolve_target("2.7.0", "12.6", (), {"TORCH_CUDA_ARCH_LIST": "8.0;12.0"})
    assert "12.0" not in cibw.resolve_target("2.7.0", "12.6", (), {}).arch_list


@pytest.mark.parametrize("torch, cuda, match", [(None, "12.8", "pass --torch"), ("2.7", "12.8", "pass --torch"),
                                                ("2.7.0", None, "pass --cuda"), ("2.7.0", "128", "pass --cuda")])
def test_incomplete_entry_says_what_to_pass(torch, cuda, match):
    with pytest.raises(BuildToolError, match=match):
        cibw.resolve_target(torch, cuda, (), {})


def test_dry_run_prints_environment_and_command(capsys, monkeypatch):
    for key, value in FORK.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    cibw.register(parser.add_subparsers())
    args = parser.parse_args(["cibuildwheel", "--dry-run", "--python", "3.11"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "CIBW_BUILD=cp311-manylinux_x86_64" in out and "SAGEATTN_LOCAL_VERSION=cu128torch2.7.0" in out
    assert "-m cibuildwheel --platform linux --output-dir" in out


def test_repaired_manylinux_wheel_is_renamed_like_the_conda_one(tmp_path):
    pytest.importorskip("wheel", reason="pip install wheel==0.48.0 (the dist extra)")
    tree = tmp_path / "tree"
    info = tree / "sageattention-2.2.0+cu128torch2.7.0.dist-info"
    (tree / "sageattention").mkdir(parents=True)
    info.mkdir()
    (tree / "sageattention" / "__init__.py").write_text("")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sageattention\nVersion: 2.2.0+cu128torch2.7.0\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                "Tag: cp312-cp312-manylinux_2_28_x86_64\n")
    subprocess.run([sys.executable, "-m", "wheel", "pack", "-d", str(tmp_path), str(tree)], check=True,
                   capture_output=True)
    (built,) = tmp_path.glob("*.whl")
    assert built.name.endswith("manylinux_2_28_x86_64.whl")
    renamed = cibw.rename_like_conda(built)
    assert renamed.name == "sageattention-2.2.0+cu128torch2.7.0-cp312-cp312-linux_x86_64.whl"
    assert renamed.exists() and not built.exists()
    with zipfile.ZipFile(renamed) as zf:
        wheel_file = zf.read("sageattention-2.2.0+cu128torch2.7.0.dist-info/WHEEL").decode()
    assert "Tag: cp312-cp312-linux_x86_64" in wheel_file
