"""One progress display for multi-variant work (rich, on stderr so --json output stays clean)."""

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextmanager
def tracker(description: str, total: int):
    """Yields ``advance(label)``; call it once per finished item."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[item]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(description, total=total, item="")

        def advance(label: str = "") -> None:
            progress.update(task, advance=1, item=label)

        yield advance
