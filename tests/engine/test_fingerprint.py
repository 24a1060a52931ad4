"""Model fingerprints: a content hash, cached in the workbench's cache, never beside the model."""

import os

from engine.backbone import fingerprint_cache_path, model_fingerprint


def _model_dir(path, monkeypatch=None):
    if monkeypatch is not None:  # files written just now: cache their hash anyway (the racy rule has its own test)
        monkeypatch.setattr("engine.backbone._RACY_NS", 0)
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(b"\x00" * 1000)
    return path


def test_fingerprint_never_writes_into_the_model_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    model = _model_dir(tmp_path / "someone-elses-model", monkeypatch)
    before = sorted(os.listdir(model))
    first = model_fingerprint(model)
    assert sorted(os.listdir(model)) == before
    cache = fingerprint_cache_path(model)
    assert cache.is_file() and cache.is_relative_to(tmp_path / "home") and first in cache.read_text()


def test_fingerprint_cache_follows_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    model = _model_dir(tmp_path / "m")
    first = model_fingerprint(model)
    assert model_fingerprint(model) == first
    (model / "model.safetensors").write_bytes(b"\x01" * 1001)
    assert model_fingerprint(model) != first
    (model / "notes.txt").write_text("bookkeeping does not change the model")
    assert model_fingerprint(model) == model_fingerprint(model)


def test_fingerprint_of_a_read_only_model_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    model = _model_dir(tmp_path / "ro", monkeypatch)
    model.chmod(0o555)
    try:
        assert model_fingerprint(model) == model_fingerprint(model) and fingerprint_cache_path(model).is_file()
    finally:
        model.chmod(0o755)
