"""What a run records about the code and environment that produced it."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import workbench

_PACKAGES = ("torch", "transformers", "peft", "duckdb", "datasets", "gradio", "bitsandbytes", "flash-attn")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def code_version() -> str:
    """The workbench version, plus the git commit when running from a checkout."""
    root = Path(workbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    if commit:
        return f"{workbench.__version__}+g{commit}{'.dirty' if dirty else ''}"
    return workbench.__version__


@functools.cache
def environment() -> dict:
    """Code version, library versions and host: recorded with every run."""
    return {
        "workbench": code_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: v for p in _PACKAGES if (v := _version(p))},
    }
