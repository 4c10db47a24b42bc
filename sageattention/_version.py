"""The one place the package version is defined (setup.py and pyproject read it)."""

__version__ = "2.2.0"
