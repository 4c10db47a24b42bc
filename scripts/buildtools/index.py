"""`index`: a static PEP 503 index per CUDA version (cu129/, cu130/, ...) for the repackaged wheels.

    pip install sageattention --extra-index-url <index-url>/cu129

Links carry `#sha256=` fragments and `data-requires-python`; `+` in file names is written `%2B`. Without
--base-url the wheels are copied next to their index page (a self-contained tree for Pages or file://).
"""

from __future__ import annotations

import hashlib
import html
import shutil
import zipfile
from email.parser import Parser
from pathlib import Path
from urllib.parse import quote

from . import BuildToolError

PROJECT = "sageattention"


def cuda_tag(wheel: Path) -> str:
    """cu129 from sageattention-2.2.0+cu129torch2.8.0-...whl (cpu for CPU-only builds)."""
    from packaging.utils import parse_wheel_filename

    _, version, _, _ = parse_wheel_filename(wheel.name)
    label = version.local or ""
    tag = label.split("torch")[0]
    if not tag.startswith(("cu", "cpu")):
        raise BuildToolError(f"{wheel.name} has no +cu<XYZ>torch<X.Y.Z> label; make it with `scripts/build.py wheels`")
    return tag


def _requires_python(wheel: Path) -> str | None:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode("utf-8"))["Requires-Python"]


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (f"<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\">"
            f"<title>{html.escape(title)}</title></head>\n  <body>\n{body}\n  </body>\n</html>\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_index(wheels: list[Path], out: Path, base_url: str | None = None) -> dict[str, Path]:
    """Writes out/<cuda_tag>/index.html and out/<cuda_tag>/sageattention/index.html; returns tag -> dir."""
    if not wheels:
        raise BuildToolError("no wheels given; make them with `scripts/build.py wheels`")
    groups: dict[str, list[Path]] = {}
    for wheel in sorted(wheels):
        groups.setdefault(cuda_tag(wheel), []).append(wheel)
    for tag, members in groups.items():
        project_dir = out / tag / PROJECT
        project_dir.mkdir(parents=True, exist_ok=True)
        links = []
        for wheel in members:
            if base_url:
                href = f"{base_url.rstrip('/')}/{quote(wheel.name)}"
            else:
                if wheel.resolve() != (project_dir / wheel.name).resolve():
                    shutil.copy2(wheel, project_dir / wheel.name)
                href = quote(wheel.name)
            requires = _requires_python(wheel)
            attr = f' data-requires-python="{html.escape(requires)}"' if requires else ""
            links.append(f'<a href="{href}#sha256={_sha256(wheel)}"{attr}>{html.escape(wheel.name)}</a>')
        (project_dir / "index.html").write_text(_page(f"Links for {PROJECT}", links), encoding="utf-8")
        (out / tag / "index.html").write_text(_page(f"sageattention {tag}", [f'<a href="{PROJECT}/">{PROJECT}</a>']),
                                              encoding="utf-8")
    root_links = [f'<a href="{tag}/">{tag}</a>' for tag in sorted(groups)]
    (out / "index.html").write_text(_page("sageattention wheel indexes", root_links), encoding="utf-8")
    return {tag: out / tag for tag in groups}


def run(args) -> int:
    wheels = [p for src in args.wheels for p in (sorted(src.glob("*.whl")) if src.is_dir() else [src])]
    for tag, path in build_index(wheels, args.out.resolve(), args.base_url).items():
        print(f"{tag}: {path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("index", help="write a PEP 503 index per CUDA version",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+", type=Path, help="wheel files or directories holding them")
    parser.add_argument("--out", type=Path, default=Path("index"), help="output directory (default: %(default)s)")
    parser.add_argument("--base-url", help="link wheels at this URL (e.g. a GitHub release) instead of copying them")
    parser.set_defaults(func=run)
