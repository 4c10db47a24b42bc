"""The stand-in channel's pieces, quickly: wheels become installed prefixes, pytorch keeps conda-forge's
cpu_/cuda build-string flavour, and the python stand-in is a venv over the running interpreter."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("rattler_build", reason='pip install -e ".[dist]"')

from buildtools import channel  # noqa: E402

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def make_wheel(tmp: Path, name="demo_tool", version="1.2.3") -> Path:
    wheel = tmp / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        tool = zipfile.ZipInfo(f"{name}/data/bin/demo-tool")
        tool.external_attr = 0o755 << 16
        archive.writestr(tool, "#!/bin/sh\necho demo\n")
        archive.writestr(f"{name}-{version}.data/scripts/demo-script", "#!/bin/sh\n")
        archive.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                         "Requires-Dist: typing_extensions>=4\nRequires-Dist: torch\n"
                         'Requires-Dist: colorama; sys_platform == "win32"\nRequires-Dist: rich; extra == "x"\n')
    return wheel


def test_wheel_becomes_an_installed_prefix(tmp_path):
    stage = tmp_path / "stage"
    name, version, depends = channel._unpack_wheel(make_wheel(tmp_path), stage)
    site = stage / "lib" / f"python{PY}" / "site-packages"
    assert (name, version) == ("demo-tool", "1.2.3")
    assert depends == ["python", "typing-extensions", "pytorch"]  # markers and extras evaluated, torch renamed
    assert (site / "demo_tool" / "__init__.py").exists() and (site / "demo_tool-1.2.3.dist-info").is_dir()
    assert (stage / "bin" / "demo-script").exists()
    tool = stage / "bin" / "demo-tool"
    assert subprocess.run([str(tool)], capture_output=True, text=True).stdout == "demo\n"


def test_requested_extras_become_dependencies(tmp_path):
    """torch asks for cuda-toolkit[cufile]: the cuda-toolkit stand-in must then depend on nvidia-cufile."""
    def wheel(name: str, requires: str) -> Path:
        path = tmp_path / f"{name}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\n"
                             f"Version: 1.0\n{requires}")
        return path

    user = wheel("user", "Requires-Dist: cuda-toolkit[cufile]==1.0\n")
    toolkit = wheel("cuda_toolkit", 'Requires-Dist: nvidia-cufile; extra == "cufile"\n'
                                    'Requires-Dist: nvidia-cublas; extra == "cublas"\n')
    extras = channel.requested_extras([user, toolkit])
    assert extras == {"cuda-toolkit": {"cufile"}}
    _, _, depends = channel._unpack_wheel(toolkit, tmp_path / "stage", extras["cuda-toolkit"])
    assert depends == ["python", "nvidia-cufile"]


def test_pytorch_build_strings_keep_the_flavour():
    tools = [("cuda-version", "13.0", {})]
    assert channel._build_string("pytorch", "2.13.0+cpu", ["python"], tools) == "cpu_0"
    assert channel._build_string("pytorch", "2.14.1", ["python", "nvidia-cuda-runtime"], tools) == "cuda130_0"
    assert channel._build_string("pytorch", "2.9.0+cu129", ["python"], tools) == "cuda129_0"
    assert channel._build_string("pip", "25.3", ["python"], tools) == "standin_0"


def test_python_standin_is_a_venv_over_this_interpreter(tmp_path):
    name, version = channel._python_standin(tmp_path / "py")
    python = tmp_path / "py" / "bin" / "python"
    prefix = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert name == "python" and version.startswith(PY)
    assert Path(prefix.stdout.strip()) == tmp_path / "py"


def test_hermetic_overrides_select_what_the_channel_holds():
    overrides = channel.hermetic_overrides(cuda=False)
    assert overrides["python"] == [PY] and overrides["cuda_compiler_version"] == ["None"]
    assert overrides["pytorch"] == ["2.13"]
