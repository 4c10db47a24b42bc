"""`conda`: build the selected variants with rattler-build (conda-forge unless --channel says otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

from . import REPO, BuildToolError, output_dir
from .matrix import add_selection_args, selected
from .progress import console, tracker


def _log_tail(output_dir: Path, lines: int = 25) -> str:
    """The end of the newest build or test log rattler-build left behind (its exception carries none)."""
    logs = sorted(output_dir.glob("**/conda_build.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return ""
    tail = logs[-1].read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {logs[-1]} (last {lines} lines) ---\n" + "\n".join(tail)


def build(variants, channels: list[str], output_dir: Path, test: bool = True) -> list[Path]:
    """Builds each variant (and runs the recipe's tests unless `test` is False); returns the .conda paths."""
    from rattler_build import ToolConfiguration

    tool = ToolConfiguration(test_strategy="native" if test else "skip")
    packages: list[Path] = []
    with tracker("conda builds", len(variants)) as advance:
        for variant in variants:
            try:
                result = variant.rendered.run_build(tool_config=tool, output_dir=output_dir, channels=channels,
                                                    package_format="conda")
            except Exception as exc:  # rattler-build raises its own error types; keep the variant in the message
                raise BuildToolError(f"{variant.id} failed: {exc}{_log_tail(output_dir)}") from exc
            packages += [Path(p) for p in result.packages]
            console.print(f"built {variant.id} in {result.build_time:.0f}s: {', '.join(map(str, result.packages))}")
            advance(variant.id)
    return packages


def run(args) -> int:
    if args.arch_list:  # read by recipe.yaml's context when it renders
        os.environ["SAGEATTN_CUDA_ARCH_LIST"] = args.arch_list
    variants = selected(args)
    if len(variants) > 1 and not args.all:
        raise BuildToolError(f"{len(variants)} variants selected; narrow with --python/--pytorch/--cuda/--platform "
                             "or pass --all to build them all")
    for path in build(variants, args.channel or ["conda-forge"], output_dir(args.output_dir), test=not args.no_test):
        print(path)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("conda", help="build conda packages for the selected variants",
                                   description=__doc__.splitlines()[0])
    add_selection_args(parser)
    parser.add_argument("--channel", "-c", action="append",
                        help="channel to solve against, repeatable (default: conda-forge)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "output", help="default: %(default)s")
    parser.add_argument("--arch-list", help='narrow TORCH_CUDA_ARCH_LIST, e.g. "8.9" for a quick build')
    parser.add_argument("--no-test", action="store_true", help="skip the recipe's tests")
    parser.add_argument("--all", action="store_true", help="allow building more than one variant")
    parser.set_defaults(func=run)
