"""EXT_PARALLEL: setup.py's build_ext compiles modules side by side, each in its own temp folder with its own
build.ninja (one shared folder would let them overwrite each other). Two tiny C++ modules, so no CUDA needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MODULE = """
#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "NAME", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&def); }
"""

DRIVER = """
import importlib.util, sys
from setuptools import Extension, setup
spec = importlib.util.spec_from_file_location("sageattn_setup", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
names = ["_par_a", "_par_b", "_par_c"]
setup(name="partest", version="0",
      ext_modules=[Extension(n, [f"{n}.cpp"], extra_compile_args={"cxx": ["-O0"]}) for n in names],
      cmdclass={"build_ext": module._build_ext_class(int(sys.argv[2]))},
      script_args=["build_ext", "--inplace", "--build-temp", "bt"])
"""


@pytest.mark.skipif(not shutil.which("ninja") or not shutil.which("c++"), reason="needs ninja and a C++ compiler")
@pytest.mark.parametrize("parallel", [1, 3])
def test_each_module_builds_in_its_own_folder(tmp_path, parallel):
    for name in ("_par_a", "_par_b", "_par_c"):
        (tmp_path / f"{name}.cpp").write_text(MODULE.replace("NAME", name))
    (tmp_path / "driver.py").write_text(DRIVER)
    done = subprocess.run([sys.executable, "driver.py", str(ROOT / "setup.py"), str(parallel)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("_par_a", "_par_b", "_par_c"):
        ninja_file = tmp_path / "bt" / name / "build.ninja"
        assert ninja_file.is_file() and f"{name}.cpp" in ninja_file.read_text()
    check = subprocess.run([sys.executable, "-c", "import _par_a, _par_b, _par_c"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
