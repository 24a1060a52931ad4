"""Reward-token features of a frozen backbone, computed once per (backbone, conversation) and kept on disk.

When the backbone does not train (the head probe, `--head-only`, `--freeze-layers` = every layer),
a conversation's hidden state at the reward token never changes, so running the backbone again
for every epoch, and again for every retrain on overlapping pairs, only repeats work. This module
keeps those states in a small SQLite file:

    cache = FeatureCache.open(config.feature_cache, max_gb=config.feature_cache_gb)
    features = FrozenFeatures(rm, precision="bf16", cache=cache)
    x = features.compute(encoded_sequences)          # (N, H) float32, before the final norm

What is stored is the residual stream entering the decoder's final norm (`decoder.norm`), not the
normed state: the final norm's weight is trained together with the value head (exactly what
`--freeze-layers` = every layer trains), and applying the norm to the cached vector is exact
because RMSNorm acts on each token on its own.

Keys are a hash of the backbone fingerprint and the conversation's token ids. The fingerprint
hashes every decoder weight the features depend on (all but the final norm), the reward token,
the precision and the attention kernel, so a changed backbone never reads stale rows; when a
backbone directory's weights change, its old rows are dropped at the next write. The file is
bounded (`max_gb`): the least recently used rows go first.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from engine.errors import EngineError
from engine.packing import PackedBatch, groups_by_token_prefix, prefix_units
from engine.progress import progress_bar
from engine.reward_pass import reward_token_pass, single_units

DEFAULT_MAX_GB = 2.0
FEATURE_BUDGET_TOKENS = 2048  # tokens per forward pass: small enough for a bar update every few seconds on CPU
_SQL_CHUNK = 500


def default_cache_dir() -> Path:
    """$WORKBENCH_FEATURE_CACHE, else $WORKBENCH_HOME/features (~/.cache/dpo-workbench/features)."""
    from engine.backbone import cache_home

    return Path(os.environ.get("WORKBENCH_FEATURE_CACHE") or cache_home() / "features")


class FeatureCache:
    """A bounded, least-recently-used store of float32 vectors keyed by text (one SQLite file)."""

    def __init__(self, directory: str | Path, max_bytes: int):
        if max_bytes <= 0:
            raise EngineError("the feature cache needs a positive size (--feature-cache-gb)")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.con = sqlite3.connect(self.directory / "features.sqlite", timeout=120, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, source TEXT, fingerprint TEXT, "
                         "value BLOB, nbytes INTEGER, used REAL)")
        self.con.execute("CREATE INDEX IF NOT EXISTS features_used ON features (used)")

    @classmethod
    def open(cls, directory: str | None, max_gb: float = DEFAULT_MAX_GB) -> FeatureCache:
        """The cache in `directory` (default: `default_cache_dir()`)."""
        return cls(directory or default_cache_dir(), int(max_gb * 1024**3))

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors among `keys` (missing keys are absent); marks them used now."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = list(keys[start:start + _SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, value in self.con.execute(f"SELECT key, value FROM features WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(value, dtype=np.float32)
            self.con.execute(f"UPDATE features SET used = ? WHERE key IN ({marks})", [time.time(), *chunk])
        return found

    def put(self, rows: dict[str, np.ndarray], *, fingerprint: str, source: str = "") -> None:
        """Store vectors; drop rows another fingerprint of the same `source` left; evict to the bound."""
        now = time.time()
        self.con.execute("BEGIN IMMEDIATE")
        try:
            if source:
                self.con.execute("DELETE FROM features WHERE source = ? AND fingerprint <> ?", [source, fingerprint])
            self.con.executemany(
                "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)",
                [(k, source, fingerprint, v.astype(np.float32).tobytes(), v.size * 4, now) for k, v in rows.items()])
            self._evict()
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def _evict(self) -> None:
        total = self.con.execute("SELECT coalesce(sum(nbytes), 0) FROM features").fetchone()[0]
        if total <= self.max_bytes:
            return
        kept, doomed = 0, []
        # newest first; rows written in one call share a time, the later-written (higher rowid) counts as newer
        for key, nbytes in self.con.execute("SELECT key, nbytes FROM features ORDER BY used DESC, rowid DESC"):
            kept += nbytes
            if kept > self.max_bytes:
                doomed.append(key)
        for start in range(0, len(doomed), _SQL_CHUNK):
            chunk = doomed[start:start + _SQL_CHUNK]
            self.con.execute(f"DELETE FROM features WHERE key IN ({','.join('?' * len(chunk))})", chunk)

    def size_bytes(self) -> int:
        return int(self.con.execute("SELECT coalesce(sum(nbytes), 0) FROM features").fetchone()[0])

    def __len__(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM features").fetchone()[0])

    def close(self) -> None:
        self.con.close()


def final_norm(rm) -> torch.nn.Module:
    """The decoder's final norm, which the cached features have not been through yet."""
    norm = getattr(rm.decoder, "norm", None)
    if not isinstance(norm, torch.nn.Module):
        raise EngineError(f"{type(rm.decoder).__name__} has no final `norm` module: frozen-backbone features "
                          "(--head-only, the feature cache) need a Llama-style decoder")
    return norm


def backbone_fingerprint(rm, precision: str) -> str:
    """A hash of everything a conversation's cached feature depends on (all weights but the final norm)."""
    norm_ids = {id(p) for p in final_norm(rm).parameters()}
    digest = hashlib.blake2b(digest_size=20)
    config = rm.decoder.config
    digest.update(f"{type(rm.decoder).__name__}|{precision}|{config._attn_implementation}|"
                  f"{rm.reward_token_id}".encode())
    seen = set()
    for name, p in rm.decoder.named_parameters(remove_duplicate=False):
        if id(p) in norm_ids or id(p) in seen:
            continue
        seen.add(id(p))
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def conversation_key(fingerprint: str, ids: Sequence[int]) -> str:
    return hashlib.blake2b(fingerprint.encode() + np.asarray(ids, dtype=np.int64).tobytes(),
                           digest_size=20).hexdigest()


class FrozenFeatures:
    """Reward-token features of a frozen backbone, read from the cache or computed (and then cached).

    `backbone_forwards` counts the conversations this object ran through the backbone, and
    `cache_hits` those it read from the cache.
    """

    def __init__(self, rm, precision: str, cache: FeatureCache | None = None, source: str = "",
                 progress: bool = True):
        self.rm, self.precision, self.cache, self.source, self.progress = rm, precision, cache, source, progress
        self.fingerprint = backbone_fingerprint(rm, precision)
        self.backbone_forwards = 0
        self.cache_hits = 0

    def compute(self, sequences: Sequence[Sequence[int]], desc: str = "backbone features") -> torch.Tensor:
        """(N, H) float32 features entering the final norm, one per encoded conversation, in order."""
        keys = [conversation_key(self.fingerprint, s) for s in sequences]
        found = self.cache.get(sorted(set(keys))) if self.cache is not None else {}
        missing = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in found}.values())
        self.cache_hits += len(keys) - len(missing)
        fresh = self._run([sequences[i] for i in missing], desc) if missing else torch.empty(0)
        new = {keys[i]: fresh[j].numpy() for j, i in enumerate(missing)}
        if self.cache is not None and new:
            self.cache.put(new, fingerprint=self.fingerprint, source=self.source)
        found.update(new)
        return torch.from_numpy(np.stack([found[k] for k in keys])) if keys else torch.empty(0)

    def _run(self, sequences: list[Sequence[int]], desc: str) -> torch.Tensor:
        rm = self.rm
        budget = max(FEATURE_BUDGET_TOKENS, max(len(s) for s in sequences))
        # conversations that start alike (a pair's two replies, a prompt's N samples) run their
        # common start once; the hidden states are those of each conversation alone
        units = prefix_units(groups_by_token_prefix(sequences), sequences, budget) if rm.reads_shared_prefixes \
            else single_units(sequences)
        bar = progress_bar(len(sequences), desc, unit=" conv", enabled=self.progress)

        def counted(n: int) -> None:
            self.backbone_forwards += n
            bar.update(n)

        try:
            return reward_token_pass(rm, units, budget, self.precision, read=pre_norm_reader(rm), on_batch=counted)
        finally:
            bar.close()


def pre_norm_reader(rm):
    """A pass reader (`engine.reward_pass`): the states (N, H) entering the final norm at each reward token."""
    norm = final_norm(rm)

    def read(batch: PackedBatch) -> torch.Tensor:
        captured = []
        hook = norm.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            rm.reward_hidden(batch)
        finally:
            hook.remove()
        return captured[-1][0][batch.reward_positions]  # (N, H)

    return read
