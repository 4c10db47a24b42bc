"""`matrix`: render every variant of recipe/recipe.yaml x variants.yaml offline and honour build.skip.

py-rattler-build's render() returns skipped variants too, so each `build.skip` expression is evaluated here
with rattler-build's own Jinja engine (a one-line probe recipe rendered with the same variant).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import PLATFORMS, README_MARKERS, RECIPE, REPO, VARIANTS, BuildToolError

# Variant keys a user selects on; the rest (compilers, stdlib) follow from the platform.
SELECT_KEYS = {"python": "python", "pytorch": "pytorch", "cuda": "cuda_compiler_version"}
RUNNERS = {"linux-64": "ubuntu-latest", "win-64": "windows-latest"}


@dataclass(frozen=True)
class Variant:
    platform: str
    python: str
    pytorch: str
    cuda: str  # "12.9", or "None" for a build without CUDA
    arch_list: str
    build_string: str
    version: str
    values: dict = field(compare=False, hash=False, repr=False)
    rendered: object = field(compare=False, hash=False, repr=False)

    @property
    def cuda_tag(self) -> str:
        return "cpu" if self.cuda == "None" else "cu" + self.cuda.replace(".", "")

    @property
    def id(self) -> str:
        return f"{self.platform}-{self.cuda_tag}-torch{self.pytorch}-py{self.python}"

    def override_args(self) -> list[str]:
        """rattler-build CLI arguments that select exactly this variant from variants.yaml."""
        return [f"--variant={key}={self.values[key]}" for key in SELECT_KEYS.values()]

    def to_json(self) -> dict:
        return {"id": self.id, "platform": self.platform, "runner": RUNNERS.get(self.platform, ""),
                "python": self.python, "pytorch": self.pytorch, "cuda": self.cuda, "cuda_tag": self.cuda_tag,
                "arch_list": self.arch_list, "build_string": self.build_string,
                "variant_args": " ".join(self.override_args())}


def _variant_config(variants: Path, platform: str, overrides: dict | None):
    from rattler_build import JinjaConfig, PlatformConfig, VariantConfig

    if not variants.is_file():
        raise BuildToolError(f"variant file {variants} not found; pass --variants PATH")
    config = VariantConfig.from_file_with_context(variants, JinjaConfig(platform=PlatformConfig(target_platform=platform)))
    if not overrides:
        return config
    values = config.to_dict()
    values.update({key: [str(v) for v in vals] for key, vals in overrides.items()})
    zips = [keys for keys in (config.zip_keys or []) if not set(keys) & set(overrides)]
    return VariantConfig(values, zip_keys=zips or None)


@lru_cache(maxsize=None)
def _skip_probe(recipe: Path):
    """A recipe whose context holds the OR of the real recipe's build.skip expressions."""
    from rattler_build import Stage0Recipe

    skips = Stage0Recipe.from_file(recipe).build.to_dict().get("skip") or []
    if not skips:
        return None
    expression = " or ".join(f"({s})" for s in skips)
    probe = {"schema_version": 1, "context": {"skipped": "${{ " + expression + " }}"},
             "package": {"name": "skip-probe", "version": "0"}}
    return Stage0Recipe.from_dict(probe, recipe_dir=tempfile.mkdtemp(prefix="skip-probe-"))


def is_skipped(recipe: Path, platform: str, values: dict) -> bool:
    from rattler_build import PlatformConfig, RenderConfig, VariantConfig

    probe = _skip_probe(recipe)
    if probe is None:
        return False
    single = VariantConfig({k: [v] for k, v in values.items() if k != "target_platform"})
    (rendered,) = probe.render(single, RenderConfig(platform=PlatformConfig(target_platform=platform)))
    return rendered.recipe.context["skipped"] == "true"


def render(recipe: Path = RECIPE, variants: Path = VARIANTS, platforms=PLATFORMS, overrides: dict | None = None,
           include_skipped: bool = False) -> list[Variant]:
    """Every variant of the recipe for `platforms`, skipped ones dropped unless `include_skipped`."""
    from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe

    if not recipe.is_file():
        raise BuildToolError(f"recipe {recipe} not found; pass --recipe PATH/recipe.yaml")
    stage0 = Stage0Recipe.from_file(recipe)
    result = []
    for platform in platforms:
        config = _variant_config(variants, platform, overrides)
        for rendered in stage0.render(config, RenderConfig(platform=PlatformConfig(target_platform=platform))):
            values = rendered.variant
            if not include_skipped and is_skipped(recipe, platform, values):
                continue
            stage1 = rendered.recipe
            result.append(Variant(
                platform=platform, python=values["python"], pytorch=values["pytorch"],
                cuda=values.get("cuda_compiler_version", "None"),
                arch_list=stage1.build.to_dict().get("script", {}).get("env", {}).get("TORCH_CUDA_ARCH_LIST", ""),
                build_string=stage1.build.string, version=stage1.package.version,
                values=values, rendered=rendered))
    return sorted(result, key=_sort_key)


def _version_key(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))


def _sort_key(v: Variant) -> tuple:
    return (v.platform, _version_key(v.cuda), _version_key(v.pytorch), _version_key(v.python))


def select(variants: list[Variant], python=None, pytorch=None, cuda=None, platform=None) -> list[Variant]:
    """Variants whose fields are among the given values (None = any)."""
    wanted = {"python": python, "pytorch": pytorch, "cuda": cuda, "platform": platform}
    chosen = [v for v in variants if all(not allowed or getattr(v, key) in allowed for key, allowed in wanted.items())]
    if not chosen:
        raise BuildToolError(f"no variant matches {({k: w for k, w in wanted.items() if w})}; "
                             "see `scripts/build.py matrix` for the list")
    return chosen


def markdown(variants: list[Variant]) -> str:
    """The README table: one row per platform x CUDA x PyTorch, Python versions joined."""
    rows: dict[tuple, list[str]] = {}
    for v in variants:
        rows.setdefault((v.platform, v.cuda, v.pytorch, v.arch_list, v.cuda_tag), []).append(v.python)
    lines = ["| Platform | CUDA | PyTorch | Python | TORCH_CUDA_ARCH_LIST | Wheel index |",
             "|---|---|---|---|---|---|"]
    for (platform, cuda, pytorch, arch_list, tag), pythons in rows.items():
        lines.append(f"| {platform} | {cuda} | {pytorch} | {', '.join(pythons)} | `{arch_list}` | `{tag}/` |")
    lines.append(f"\n{len(variants)} variants, from `recipe/recipe.yaml` and `variants.yaml`.")
    return "\n".join(lines) + "\n"


def readme_with_table(readme_text: str, table: str) -> str:
    begin, end = README_MARKERS
    if begin not in readme_text or end not in readme_text:
        raise BuildToolError(f"README.md lacks the markers {begin} / {end}; add them inside the distribution section")
    head, rest = readme_text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{table}{end}{tail}"


def table_in_readme(readme_text: str) -> str:
    begin, end = README_MARKERS
    if begin not in readme_text or end not in readme_text:
        raise BuildToolError(f"README.md lacks the markers {begin} / {end}")
    return readme_text.split(begin, 1)[1].split(end, 1)[0].lstrip("\n")


def add_selection_args(parser) -> None:
    parser.add_argument("--platform", action="append", choices=PLATFORMS, help="target platform (repeatable; default: all)")
    parser.add_argument("--python", action="append", help="Python version, e.g. 3.12 (repeatable)")
    parser.add_argument("--pytorch", action="append", help="PyTorch minor version, e.g. 2.8 (repeatable)")
    parser.add_argument("--cuda", action="append", help="CUDA version, e.g. 12.9, or None (repeatable)")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="recipe.yaml (default: %(default)s)")
    parser.add_argument("--variants", type=Path, default=VARIANTS, help="variant config (default: %(default)s)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=V1,V2",
                        help="replace a variant key's values, e.g. cuda_compiler_version=None (repeatable)")


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise BuildToolError(f"--override {item!r} is not KEY=V1[,V2]; e.g. --override python=3.11")
        overrides[key] = values.split(",")
    return overrides


def selected(args) -> list[Variant]:
    """The variants chosen by add_selection_args' options."""
    variants = render(args.recipe, args.variants, tuple(args.platform or PLATFORMS), parse_overrides(args.override))
    return select(variants, args.python, args.pytorch, args.cuda)


def run(args) -> int:
    variants = selected(args)
    if args.json:
        print(json.dumps({"include": [v.to_json() for v in variants]}, indent=None if args.compact else 2))
    elif args.markdown or args.update_readme:
        table = markdown(variants)
        if args.update_readme:
            readme = REPO / "README.md"
            readme.write_text(readme_with_table(readme.read_text(encoding="utf-8"), table), encoding="utf-8")
        else:
            print(table, end="")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("platform", "CUDA", "PyTorch", "Python", "build string", "TORCH_CUDA_ARCH_LIST",
                      title=f"sageattention {variants[0].version}: {len(variants)} variants")
        for v in variants:
            table.add_row(v.platform, v.cuda, v.pytorch, v.python, v.build_string, v.arch_list)
        Console(width=140).print(table)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("matrix", help="render every variant offline (honours build.skip)",
                                   description=__doc__.splitlines()[0])
    add_selection_args(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help='print {"include": [...]} for a CI matrix')
    out.add_argument("--markdown", action="store_true", help="print the README table")
    out.add_argument("--update-readme", action="store_true", help="rewrite the table in README.md")
    parser.add_argument("--compact", action="store_true", help="one-line JSON (for $GITHUB_OUTPUT)")
    parser.set_defaults(func=run)
