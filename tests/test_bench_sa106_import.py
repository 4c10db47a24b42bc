"""The benchmarks load sageattention 1.0.6 under another name, beside this repo's package (bench_attention.import_sa106)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_attention", ROOT / "benchmarks" / "bench_attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_old_package_loads_under_its_alias_without_shadowing_ours(tmp_path, monkeypatch):
    pkg = tmp_path / "sageattention"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .core import sageattn\n")
    (pkg / "core.py").write_text("def sageattn(*args, **kwargs):\n    return 'old'\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    bench = _bench_module()
    monkeypatch.delitem(sys.modules, bench.ALIAS, raising=False)
    old = bench.import_sa106(str(tmp_path))
    assert old.__name__ == bench.ALIAS and old.sageattn() == "old"  # its relative imports resolved inside it
    import sageattention

    assert Path(sageattention.__file__).resolve().parent == ROOT / "sageattention"
    monkeypatch.delitem(sys.modules, bench.ALIAS)


def test_a_folder_without_the_old_package_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no core.py"):
        _bench_module().import_sa106(str(tmp_path))
