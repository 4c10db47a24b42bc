"""setup.py run for real on a copy of the tree (never the checkout itself): the pure-Python paths, the version
label, one-line errors, pip's isolated build, and `import sageattention` next to a mismatched build record."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path):
    dst = tmp_path / "src"
    dst.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "sageattention", dst / "sageattention",
                    ignore=shutil.ignore_patterns("__pycache__", "_build_info.py", "*.so", "*.pyd"))
    return dst


def run(cmd, cwd, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TORCH_CUDA_ARCH_LIST", "SAGEATTN_LOCAL_VERSION", "CUDA_MINOR_VERSION", "TORCH_MINOR_VERSION")}
    return subprocess.run(cmd, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=600)


def recorded(tree):
    text = (tree / "sageattention" / "_build_info.py").read_text()
    return ast.literal_eval(text.split("BUILD_INFO = ", 1)[1])


def test_skip_flag_gives_pure_python_with_label(tree):
    out = run([sys.executable, "setup.py", "--version"], tree,
              SAGEATTN_SKIP_CUDA_BUILD="1", SAGEATTN_LOCAL_VERSION="cu129torch2.8.0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "2.2.0+cu129torch2.8.0"
    info = recorded(tree)
    assert info["cuda_extension"] is False and info["skip_reason"] == "SAGEATTN_SKIP_CUDA_BUILD=1"
    assert info["version"] == "2.2.0+cu129torch2.8.0"


def test_fork_variables_set_the_version(tree):
    out = run([sys.executable, "setup.py", "--version"], tree, SAGEATTN_SKIP_CUDA_BUILD="1",
              CUDA_MINOR_VERSION="8", TORCH_MINOR_VERSION="7", TORCH_PATCH_VERSION="0")
    assert out.stdout.strip().splitlines()[-1] == "2.2.0+cu128torch2.7.0", out.stderr


def test_without_torch_installs_pure_python(tree, tmp_path):
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch hidden by the test')\n")
    out = run([sys.executable, "setup.py", "--version"], tree, PYTHONPATH=str(blocker.parent))
    assert out.returncode == 0, out.stderr
    assert "torch was not importable at build time" in recorded(tree)["skip_reason"]
    assert "--no-build-isolation" in recorded(tree)["skip_reason"]


@pytest.mark.parametrize("env, message", [
    ({"EXT_PARALLEL": "lots"}, "sageattention build: EXT_PARALLEL='lots' is not a positive integer"),
    ({"SAGEATTN_LOCAL_VERSION": "cu129 torch"}, "sageattention build: SAGEATTN_LOCAL_VERSION='cu129 torch' is not a PEP 440"),
    ({"SAGEATTN_SKIP_CUDA_BUILD": "perhaps"}, "sageattention build: SAGEATTN_SKIP_CUDA_BUILD='perhaps' is not a boolean"),
])
def test_bad_setting_is_one_line_error(tree, env, message):
    out = run([sys.executable, "setup.py", "--version"], tree, **env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(message)


@pytest.mark.slow
def test_pip_isolated_build_gives_pure_python_wheel(tree, tmp_path):
    # pyproject's build requirements have no torch on purpose: this must still produce an installable wheel.
    out = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "wheels"), str(tree)], tree,
              SAGEATTN_LOCAL_VERSION="cu129torch2.8.0")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    assert wheel.name == "sageattention-2.2.0+cu129torch2.8.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read("sageattention/_build_info.py").decode()
    assert "torch was not importable at build time" in text


def test_import_and_info_survive_a_mismatched_build(tree):
    info = {"version": "2.2.0", "local_version": None, "cuda_extension": True, "skip_reason": None,
            "torch": "1.13.1+cu117", "torch_cuda": "11.7", "cxx11_abi": 0, "nvcc": "11.7.64", "cxx": "c++ 9",
            "arch_list": "8.0", "modules": {"_C_sm80": {"built": True, "archs": ["8.0"]}}}
    (tree / "sageattention" / "_build_info.py").write_text(f"BUILD_INFO = {info!r}\n")
    out = run([sys.executable, "-c", "import sageattention; print(sageattention.__file__)"], tree)
    assert out.returncode == 0 and out.stdout.strip().startswith(str(tree)), out.stderr
    out = run([sys.executable, "-m", "sageattention", "info"], tree)
    assert out.returncode == 0, out.stderr
    assert "built for torch 1.13.1+cu117" in out.stdout
