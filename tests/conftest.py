import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HH_RLHF = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and OpenMP threads that spin-wait collapse when
# the cores are shared (a 12-step tiny training run: 0.6 s on one thread, 19 s on two under load).
# Child processes started by tests inherit this. Tests on real models raise it themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Frozen-backbone features of test models go to a throwaway cache, not the user's (children inherit it).
if "WORKBENCH_FEATURE_CACHE" not in os.environ:
    import tempfile

    os.environ["WORKBENCH_FEATURE_CACHE"] = tempfile.mkdtemp(prefix="workbench-test-features-")


@pytest.fixture
def hh_rlhf_path() -> Path:
    if not HH_RLHF.exists():
        pytest.skip(f"{HH_RLHF} is not present (it lives in ../shared/data beside the checkout)")
    return HH_RLHF


@pytest.fixture
def tiny_model_dir(tmp_path_factory) -> Path:
    from tests.tiny import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))
