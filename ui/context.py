"""What every tab of the app shares: the store (a `SharedStore`), the curation index, the job
manager (capped per store), the export and runs directories, the models the app may load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.models.allowed_models import AllowedModels
from workbench.curate.curation import PairIndex
from workbench.runtime.job_slots import store_slots_dir
from workbench.runtime.jobs import JobManager
from workbench.runtime.sharing import SharedStore
from workbench.store import Store


@dataclass
class AppContext:
    store: Store
    export_dir: Path
    runs_dir: Path
    index: PairIndex
    jobs: JobManager
    models: AllowedModels

    @classmethod
    def create(cls, store: Store, export_dir: str | Path | None = None,
               runs_dir: str | Path | None = None, models_dir: str | Path | None = None) -> "AppContext":
        """Defaults: `exports/` and `runs/` beside the store file; no --models-dir."""
        store = SharedStore.sharing(store)  # leaves the file free now and then for the CLI
        base = store.path.resolve().parent
        export_dir = Path(export_dir) if export_dir else base / "exports"
        runs_dir = Path(runs_dir) if runs_dir else base / "runs"
        export_dir.mkdir(parents=True, exist_ok=True)
        runs_dir.mkdir(parents=True, exist_ok=True)
        jobs = JobManager(runs_dir / "jobs", slots_dir=store_slots_dir(store.path))
        return cls(store, export_dir.resolve(), runs_dir.resolve(), PairIndex(store), jobs, AllowedModels(models_dir))
