"""Exit 1 unless every compiled module the installed sageattention recorded loads (no GPU needed).

Run as a script after installing a wheel (its folder, not the source tree, is on sys.path): by docker/Dockerfile
and cibuildwheel's test step."""

import sys

from sageattention import _ext

info = _ext.build_info()
if info is None:
    sys.exit(f"no CUDA extension in this install: {_ext.status()}")
print(_ext.summary())
failed = 0
for name, state in _ext.status().items():
    built = info["modules"][name]["built"]
    ok = state.startswith("loaded") or not built
    failed += not ok
    print(f"  {name:<10} {state}")
sys.exit(1 if failed else 0)
