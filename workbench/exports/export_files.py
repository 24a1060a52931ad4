"""Where an export's files go: never over user files, never half-written, never apart.

`check_export_target` refuses an existing path unless `overwrite`, and with it still refuses
anything that is not an earlier export (one with a workbench manifest). `StagedExport` gives the
writer temporary names beside the target (a hidden `.NAME.XXXX.tmp` file, or a hidden directory
for `hf`); the caller records the export in the store and only then calls `swap_in()`, so data and
manifest appear together after the store has committed. Any failure before that removes the
temporaries and leaves the directory as it was.

A file export is two names (`out` and `out.manifest.json`), and no rename moves two names at once:
a crash between the two renames would pair the new data with the old manifest. So `swap_in()`
first writes a journal (`.NAME.swap.json`, itself renamed into place) naming both staged files,
then renames them, then drops the journal; the next export to the same path (which every
`check_export_target` call starts with) rolls an interrupted swap forward. `verify_export` says
whether a manifest vouches for the data beside it (its `content_sha256` is the data file's hash).
An `hf` export is one directory with its manifest inside: one rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from workbench.errors import WorkbenchError

HF_MANIFEST = "workbench_manifest.json"


def manifest_path(out: Path, fmt: str) -> Path:
    """The manifest of an export at `out`: inside an `hf` directory, beside a file otherwise."""
    return out / HF_MANIFEST if fmt == "hf" else out.with_name(out.name + ".manifest.json")


def _is_export_manifest(path: Path) -> bool:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"format", "content_sha256", "store_hash"} <= manifest.keys()


def check_export_target(out: Path, fmt: str, overwrite: bool) -> None:
    """Refuse to write where a user's file or directory would be replaced (after finishing a swap
    into `out` that a crash interrupted)."""
    recover_interrupted_swap(out, fmt)
    manifest = manifest_path(out, fmt)
    exists = out.exists() or out.is_symlink()
    if exists and fmt != "hf" and out.is_dir():
        raise WorkbenchError(f"{out} is a directory; give a file path for {fmt}")
    if exists and fmt == "hf" and not out.is_dir():
        raise WorkbenchError(f"{out} is a file; give a directory path for hf")
    if not (exists or manifest.exists()):
        return
    if not overwrite:
        raise WorkbenchError(f"{out} already exists: pass --overwrite to replace an earlier export there, "
                             "or choose a new path")
    if not _is_export_manifest(manifest):
        raise WorkbenchError(f"{out} is not an earlier workbench export (no valid {manifest.name}): "
                             "refusing to replace it; choose a new path")


class StagedExport:
    """Temporary data and manifest beside `out`; `swap_in()` puts them in place, exit cleans up."""

    def __init__(self, out: Path, fmt: str):
        self.out, self.fmt = out, fmt
        self.manifest_target = manifest_path(out, fmt)
        prefix = f".{out.name}."
        if fmt == "hf":
            self.data = Path(tempfile.mkdtemp(dir=out.parent, prefix=prefix, suffix=".tmp"))
            self.manifest = self.data / HF_MANIFEST  # travels inside the directory: one swap
        else:
            self.data = _temp_file(out.parent, prefix)
            self.manifest = _temp_file(out.parent, prefix)
        self.swapped = False

    def __enter__(self) -> StagedExport:
        return self

    def __exit__(self, *exc) -> None:
        if not self.swapped:
            self._remove_temps()

    def write_manifest(self, manifest: dict) -> None:
        self.manifest.write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    def swap_in(self) -> None:
        """Replace `out` (and its manifest) with the staged ones; call after the store committed."""
        if self.fmt == "hf":
            _swap_directory(self.data, self.out)
        else:
            journal = _journal_path(self.out)
            pending = journal.with_name(journal.name + ".tmp")
            with open(pending, "w") as f:
                json.dump({"data": self.data.name, "manifest": self.manifest.name}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(pending, journal)  # from here on, a crash is rolled forward by the next export
            _roll_forward(journal, self.out, self.manifest_target)
        self.swapped = True

    def _remove_temps(self) -> None:
        if self.fmt == "hf":
            shutil.rmtree(self.data, ignore_errors=True)
        else:
            for path in (self.data, self.manifest):
                path.unlink(missing_ok=True)


def _journal_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.swap.json")


def _roll_forward(journal: Path, out: Path, manifest_target: Path) -> None:
    """Rename whichever staged files of the journal are still waiting, data first, then drop it."""
    try:
        plan = json.loads(journal.read_text())
        names = [plan["data"], plan["manifest"]]
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)  # torn or foreign: it cannot have been renamed into place by us
        return
    for name, target in zip(names, (out, manifest_target)):
        staged = out.parent / str(name)
        # only our own temporaries, beside the target: a journal never moves anything else
        if staged.name == name and name.startswith(f".{out.name}.") and name.endswith(".tmp") and staged.is_file():
            os.replace(staged, target)
    journal.unlink(missing_ok=True)


def recover_interrupted_swap(out: Path, fmt: str) -> None:
    """Finish a swap into `out` that a crash interrupted between its renames (see the docstring)."""
    out = Path(out)
    if fmt == "hf" or not out.name:  # '.' and the like: refused as a target by the caller
        return
    journal = _journal_path(out)
    if journal.is_file():
        _roll_forward(journal, out, manifest_path(out, fmt))


def verify_export(out: Path, fmt: str) -> None:
    """Refuse a file export whose manifest does not vouch for the data beside it."""
    from workbench.ids import sha256_file

    out = Path(out)
    manifest = manifest_path(out, fmt)
    try:
        recorded = json.loads(manifest.read_text())["content_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise WorkbenchError(f"{manifest} is missing or not a workbench manifest: export again") from None
    if fmt != "hf" and sha256_file(out) != recorded:
        raise WorkbenchError(f"{out} does not match its manifest {manifest.name} (an interrupted export?): "
                             "export again with --overwrite")


def _temp_file(folder: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    os.close(fd)
    return Path(name)


def _swap_directory(new: Path, out: Path) -> None:
    """rename() cannot replace a non-empty directory: move the old one aside, then drop it."""
    if not (out.exists() or out.is_symlink()):
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rename(out, old / "export")
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old / "export", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
