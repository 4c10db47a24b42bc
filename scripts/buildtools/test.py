"""`test`: install a wheel with its matching torch in a fresh venv, import it, run `sageattention info`
and the CPU tests (from a copy of tests/, so the source tree is never what gets imported)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import REPO, BuildToolError
from .progress import console

# The CPU subset: what the package promises without a GPU; tests/distribution test the build tools instead.
PYTEST_ARGS = ["-m", "not gpu and not slow", "-q", "-p", "no:cacheprovider", "--ignore=tests/distribution"]


def _interpreter_for(wheel: Path, python: str | None) -> str:
    from packaging.utils import parse_wheel_filename

    if python:
        return python
    tag = next(iter(parse_wheel_filename(wheel.name)[3]))
    wanted = f"{tag.interpreter[2]}.{tag.interpreter[3:]}"
    if f"{sys.version_info.major}.{sys.version_info.minor}" == wanted:
        return sys.executable
    found = shutil.which(f"python{wanted}")
    if not found:
        raise BuildToolError(f"{wheel.name} needs Python {wanted}; put python{wanted} on PATH or pass --python")
    return found


def _run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    console.print("$ " + " ".join(map(str, cmd)))
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise BuildToolError(f"`{' '.join(map(str, cmd))}` failed with exit code {done.returncode}:\n{tail}")
    return done.stdout


def test_wheel(wheel: Path, python: str | None = None, pip_args: tuple = (), pytest: bool = True,
               venv_dir: Path | None = None, tests: tuple = ("tests",)) -> str:
    """Returns `python -m sageattention info`'s output; raises BuildToolError on the first failing step."""
    if not wheel.is_file():
        raise BuildToolError(f"wheel {wheel} not found; make it with `scripts/build.py wheels`")
    with tempfile.TemporaryDirectory(prefix="wheel-test-") as tmp:
        venv = venv_dir or Path(tmp) / "venv"
        _run([_interpreter_for(wheel, python), "-m", "venv", "--clear", venv])
        py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        target = f"{wheel.resolve()}[test]" if pytest else str(wheel.resolve())
        _run([py, "-m", "pip", "install", "--quiet", *pip_args, target])
        _run([py, "-m", "pip", "check"])
        work = Path(tmp) / "work"
        work.mkdir()
        where = _run([py, "-c", "import sageattention, torch; print(sageattention.__file__); "
                                "print(sageattention.__version__, torch.__version__)"], cwd=work)
        if str(venv.resolve()) not in str(Path(where.splitlines()[0]).resolve()):
            raise BuildToolError(f"imported sageattention from {where.splitlines()[0]}, not from the venv")
        info = _run([py, "-m", "sageattention", "info"], cwd=work)
        if pytest:
            for item in ("tests", "docs", "pyproject.toml"):
                src = REPO / item
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / item)
            _run([py, "-m", "pytest", *tests, *PYTEST_ARGS], cwd=work)
        return where + info


def run(args) -> int:
    for wheel in args.wheels:
        print(test_wheel(wheel, args.python, tuple(args.pip_arg), pytest=not args.no_pytest,
                         tests=tuple(args.tests or ["tests"])))
        console.print(f"[green]ok[/green] {wheel.name}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("test", help="install wheels in fresh venvs and test them",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+", type=Path, help="wheel files")
    parser.add_argument("--python", help="interpreter for the venv (default: python<X.Y> matching the wheel tag)")
    parser.add_argument("--pip-arg", action="append", default=[],
                        help="extra pip install argument, e.g. --pip-arg=--extra-index-url=https://download.pytorch.org/whl/cu129")
    parser.add_argument("--tests", action="append", help="test files/folders to run (default: tests)")
    parser.add_argument("--no-pytest", action="store_true", help="only install, import and run `sageattention info`")
    parser.set_defaults(func=run)
