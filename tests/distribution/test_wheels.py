"""`wheels` and `index`: a .conda becomes a wheel pip accepts (name, tags, METADATA, RECORD hashes), and the
PEP 503 index serves it to `pip install --index-url file://...`."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("rattler_build", reason='pip install -e ".[dist]"')
pytest.importorskip("conda_package_handling", reason='pip install -e ".[dist]"')

from buildtools import BuildToolError, index, wheels  # noqa: E402

PY = f"{sys.version_info.major}{sys.version_info.minor}"


def fake_conda(tmp: Path, *, cuda="129", torch="2.8.0", platform="linux-64", label=None) -> Path:
    """A sageattention .conda laid out the way the recipe's build leaves it (assembled by rattler-build)."""
    from rattler_build import assemble_package

    label = f"cu{cuda}torch{torch}" if label is None else label
    version = f"2.2.0+{label}" if label else "2.2.0"
    root = tmp / f"files-{cuda}-{platform}"
    site = root / ("Lib/site-packages" if platform == "win-64" else f"lib/python{PY[0]}.{PY[1:]}/site-packages")
    pkg, dist = site / "sageattention", site / f"sageattention-{version}.dist-info"
    for folder in (pkg / "__pycache__", dist):
        folder.mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "2.2.0"\n')
    (pkg / "__pycache__" / "__init__.cpython.pyc").write_bytes(b"stale bytecode")
    suffix = f".cp{PY}-win_amd64.pyd" if platform == "win-64" else f".cpython-{PY}-x86_64-linux-gnu.so"
    (pkg / f"_C_sm80{suffix}").write_bytes(b"\x7fELF not really a module")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.4\nName: sageattention\nVersion: {version}\n"
                                   "Requires-Python: >=3.9\nRequires-Dist: torch>=2.4\n"
                                   'Requires-Dist: pytest; extra == "test"\n\nLong description.\n')
    for name, text in {"INSTALLER": "conda\n", "REQUESTED": "", "direct_url.json": "{}",
                       "RECORD": "stale\n", "WHEEL": "Tag: py3-none-any\n"}.items():
        (dist / name).write_text(text)
    torch_minor = ".".join(torch.split(".")[:2])
    build = f"cuda{cuda}_torch{torch_minor.replace('.', '')}_py{PY}_h1a2b3c4_0"
    depends = ["python", f"pytorch >={torch},<{torch_minor}.99a0", "pytorch * cuda*", "cuda-version >=12,<13"]
    out = assemble_package(name="sageattention", version="2.2.0", target_platform=platform, build_string=build,
                           output_dir=tmp / "conda", files_dir=root, depends=depends, compression_level=1)
    return out.path


def record_rows(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        return {row[0]: row[1] for row in csv.reader(io.StringIO(archive.read(record).decode()))}


def dist_info_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(f".dist-info/{name}"))).decode()


@pytest.fixture(scope="module")
def linux_wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("linux")
    return wheels.conda_to_wheel(fake_conda(tmp), tmp / "wheels")


def test_wheel_name_encodes_cuda_torch_and_python(linux_wheel):
    from packaging.utils import parse_wheel_filename

    assert linux_wheel.name == f"sageattention-2.2.0+cu129torch2.8.0-cp{PY}-cp{PY}-linux_x86_64.whl"
    name, version, _, tags = parse_wheel_filename(linux_wheel.name)
    assert (name, version.local, {str(t) for t in tags}) == \
        ("sageattention", "cu129torch2.8.0", {f"cp{PY}-cp{PY}-linux_x86_64"})


def test_record_lists_every_file_with_its_hash(linux_wheel):
    rows = record_rows(linux_wheel)
    with zipfile.ZipFile(linux_wheel) as archive:
        names = set(archive.namelist())
        for name in names:
            if name.endswith("RECORD"):
                continue
            digest = base64.urlsafe_b64encode(hashlib.sha256(archive.read(name)).digest()).rstrip(b"=").decode()
            assert rows[name] == f"sha256={digest}", name
    assert set(rows) == names


def test_conda_only_files_are_dropped(linux_wheel):
    names = zipfile.ZipFile(linux_wheel).namelist()
    assert not [n for n in names if "__pycache__" in n or n.rsplit("/", 1)[-1] in
                ("INSTALLER", "REQUESTED", "direct_url.json")]
    assert f"sageattention/_C_sm80.cpython-{PY}-x86_64-linux-gnu.so" in names


def test_metadata_pins_the_torch_minor_it_was_built_against(linux_wheel):
    metadata = dist_info_text(linux_wheel, "METADATA")
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert "Version: 2.2.0+cu129torch2.8.0" in metadata.splitlines()
    assert [r for r in requires if "torch" in r] == ["Requires-Dist: torch==2.8.*"]
    assert 'Requires-Dist: pytest; extra == "test"' in requires


def test_wheel_file_declares_a_platform_wheel(linux_wheel):
    wheel_file = dist_info_text(linux_wheel, "WHEEL").splitlines()
    assert "Root-Is-Purelib: false" in wheel_file
    assert [line for line in wheel_file if line.startswith("Tag:")] == [f"Tag: cp{PY}-cp{PY}-linux_x86_64"]


def test_pip_installs_it(linux_wheel, tmp_path):
    """pip checks the name, the tags against this interpreter and the RECORD while installing."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(tmp_path / "t"), str(linux_wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t" / "sageattention" / "__init__.py").exists()


def test_windows_package_gets_a_win_amd64_wheel(tmp_path):
    wheel = wheels.conda_to_wheel(fake_conda(tmp_path, cuda="128", torch="2.10.0", platform="win-64"), tmp_path)
    assert wheel.name == f"sageattention-2.2.0+cu128torch2.10.0-cp{PY}-cp{PY}-win_amd64.whl"
    assert f"sageattention/_C_sm80.cp{PY}-win_amd64.pyd" in zipfile.ZipFile(wheel).namelist()


def test_label_is_derived_when_the_build_did_not_set_it(tmp_path):
    wheel = wheels.conda_to_wheel(fake_conda(tmp_path, label=""), tmp_path)
    assert "+cu129torch2.8.0-" in wheel.name


def test_label_that_contradicts_the_build_is_refused(tmp_path):
    with pytest.raises(BuildToolError, match="built for cu129torch2.8.0"):
        wheels.conda_to_wheel(fake_conda(tmp_path, label="cu130torch2.8.0"), tmp_path)


def test_not_a_conda_file_is_a_one_line_error(tmp_path):
    with pytest.raises(BuildToolError, match="not a .conda file"):
        wheels.conda_to_wheel(tmp_path / "x.tar.bz2", tmp_path)


@pytest.fixture(scope="module")
def served_index(tmp_path_factory, linux_wheel):
    tmp = tmp_path_factory.mktemp("index")
    other = wheels.conda_to_wheel(fake_conda(tmp, cuda="130", torch="2.10.0"), tmp / "wheels")
    return index.build_index([linux_wheel, other], tmp / "index")


def test_index_has_one_tree_per_cuda_with_sha256_links(served_index, linux_wheel):
    assert set(served_index) == {"cu129", "cu130"}
    page = (served_index["cu129"] / "sageattention" / "index.html").read_text()
    digest = hashlib.sha256(linux_wheel.read_bytes()).hexdigest()
    assert f'href="{linux_wheel.name.replace("+", "%2B")}#sha256={digest}"' in page
    assert "cu130" not in page


def test_pip_installs_from_the_file_index(served_index, tmp_path):
    url = served_index["cu129"].as_uri()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--index-url", url,
                           "--target", str(tmp_path / "t"), "sageattention"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    installed = next((tmp_path / "t").glob("sageattention-*.dist-info"))
    assert installed.name == "sageattention-2.2.0+cu129torch2.8.0.dist-info"


def test_wheel_without_label_is_refused_by_the_index(tmp_path):
    plain = tmp_path / f"sageattention-2.2.0-cp{PY}-cp{PY}-linux_x86_64.whl"
    plain.write_bytes(b"")
    with pytest.raises(BuildToolError, match="no \\+cu<XYZ>torch"):
        index.build_index([plain], tmp_path / "index")


def test_cli_help_lists_every_subcommand():
    from buildtools import REPO

    out = subprocess.run([sys.executable, str(REPO / "scripts" / "build.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("matrix", "conda", "wheels", "index", "test", "channel"):
        assert command in out
