"""Subcommands of scripts/build.py, one module each; every module exposes ``register(subparsers)``."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipe" / "recipe.yaml"
VARIANTS = REPO / "variants.yaml"
PLATFORMS = ("linux-64", "win-64")
# The generated matrix table sits between these, inside the README's distribution section.
README_MARKERS = ("<!-- BEGIN matrix (scripts/build.py matrix --update-readme) -->", "<!-- END matrix -->")


class BuildToolError(RuntimeError):
    """A problem the user can fix; build.py prints it as one line and exits 1."""


def package_version() -> str:
    """The version from sageattention/_version.py, the only place it is defined."""
    scope: dict = {}
    exec((REPO / "sageattention" / "_version.py").read_text(encoding="utf-8"), scope)
    return scope["__version__"]


def output_dir(path: Path) -> Path:
    """Creates an output folder; inside the checkout it gets a `*` .gitignore, so git and the recipe's
    source copy (`use_gitignore: true`) never pick up earlier builds."""
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    if path.is_relative_to(REPO) and not (path / ".gitignore").exists():
        (path / ".gitignore").write_text("# build output of scripts/build.py\n*\n", encoding="utf-8")
    return path
