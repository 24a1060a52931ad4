"""Multi-process reward-model training on CPU with gloo: DDP, sequence parallel, FSDP, checkpoints.

Every multi-rank run is compared with the same training on one process (fp32). The launches
(torchrun, 2 and 4 processes) are shared by the tests through module-scoped fixtures.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from engine.errors import EngineError
from engine.losses import reward_loss
from engine.packing import pack_pairs
from tests.distributed.common import ROOT, TRAIN_ARGS, make_pairs, metrics, sp_case, torchrun, write_pairs
from tests.tiny import make_tiny_model_dir, tiny_llama_config

pytestmark = pytest.mark.distributed

WORKER = str(ROOT / "tests" / "distributed" / "worker.py")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    return {"root": root, "model": make_tiny_model_dir(root / "tiny"),
            "data": write_pairs(root / "pairs.jsonl", make_pairs(32)),
            "eval": write_pairs(root / "eval.jsonl", make_pairs(40)[32:])}


def _lora_args(work) -> list[str]:
    """LoRA, evaluated on held-out pairs every 2 steps (under SP, between steps, on rank 0)."""
    return ["--lora", "--lora-dropout", "0", "--eval-data", str(work["eval"]), "--eval-every", "2"]


def _train_args(work, out: str, *extra: str) -> list[str]:
    return ["--db", str(work["root"] / "t.duckdb"), "-q", "rm", "train", "--data", str(work["data"]),
            "--base", str(work["model"]), "--out", str(work["root"] / out), *TRAIN_ARGS, *extra]


def _launch(work, name: str, jobs: list, nproc: int) -> str:
    spec = work["root"] / f"{name}.json"
    spec.write_text(json.dumps(jobs))
    return torchrun([WORKER, str(spec)], nproc=nproc)


@pytest.fixture(scope="module")
def one_rank(work):
    """The reference: the same training in this process, on one rank."""
    from cli import load_commands

    for out, extra in (("one", []), ("one_lora", _lora_args(work))):
        result = CliRunner().invoke(load_commands(), _train_args(work, out, *extra))
        assert result.exit_code == 0, result.output
    return metrics(work["root"] / "one")


@pytest.fixture(scope="module")
def two_ranks(work):
    """One 2-process launch for many runs; then a second launch resumes the runs that crashed."""
    root = work["root"]
    _launch(work, "first", [
        ["sp_grads", str(root / "sp2"), str(work["model"])],
        ["workbench", _train_args(work, "ddp"), None],
        # gradient checkpointing re-runs the SP all-to-alls inside backward
        ["workbench", _train_args(work, "sp", "--sp-size", "2", "--gradient-checkpointing"), None],
        ["workbench", _train_args(work, "sp_lora", "--sp-size", "2", *_lora_args(work)), None],
        ["workbench", _train_args(work, "fsdp", "--fsdp"), None],
        ["workbench", _train_args(work, "fsdp_sp", "--fsdp", "--sp-size", "2"), None],
        ["workbench", _train_args(work, "ddp_crash"), 2],
        ["workbench", _train_args(work, "fsdp_crash", "--fsdp"), 2],
    ], nproc=2)
    crashed = {name: metrics(root / name) for name in ("ddp_crash", "fsdp_crash")}
    _launch(work, "resume", [
        ["workbench", _train_args(work, "ddp_crash", "--resume", "--json"), None],
        ["workbench", _train_args(work, "fsdp_crash", "--fsdp", "--resume", "--json"), None],
    ], nproc=2)
    return crashed


@pytest.fixture(scope="module")
def four_ranks(work):
    """dp 2 x sp 2 on four processes, and the SP check with sp 4 (more ranks than kv heads)."""
    _launch(work, "four", [
        ["sp_grads", str(work["root"] / "sp4"), str(work["model"])],
        ["workbench", _train_args(work, "dp2sp2", "--sp-size", "2"), None],
    ], nproc=4)


def _assert_same_trajectory(run: list[dict], reference: list[dict], tol: float = 1e-5) -> None:
    """Same loss per step (fp32, within `tol`), same gradient norm before clipping (relative 10 * tol)."""
    assert [m["step"] for m in run] == [m["step"] for m in reference] == [1, 2, 3, 4]
    for a, b in zip(run, reference):
        assert a["loss"] == pytest.approx(b["loss"], abs=tol), a["step"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=10 * tol), a["step"]
        assert (a["accuracy"], a["tokens"], a["pairs"]) == (b["accuracy"], b["tokens"], b["pairs"])


def _scores(model_dir) -> list[float]:
    from engine.data import ScoringItem
    from engine.reward_model import RewardModel
    from engine.scoring import Scorer

    return Scorer(RewardModel.load(model_dir)).score([ScoringItem(p.prompt, p.chosen) for p in make_pairs(8)])


def test_two_rank_ddp_follows_the_one_rank_loss_trajectory(work, one_rank, two_ranks):
    _assert_same_trajectory(metrics(work["root"] / "ddp"), one_rank)
    assert _scores(work["root"] / "ddp") == pytest.approx(_scores(work["root"] / "one"), abs=1e-5)
    assert one_rank[-1]["loss"] < one_rank[0]["loss"]  # it trained


def test_two_rank_sequence_parallel_gives_one_rank_scores_loss_and_gradients(work, two_ranks):
    _assert_sp_matches_one_rank(work, 2)


@pytest.mark.slow
def test_four_rank_sequence_parallel_with_fewer_kv_heads_than_ranks(work, four_ranks):
    _assert_sp_matches_one_rank(work, 4)


def _assert_sp_matches_one_rank(work, sp: int) -> None:
    rm, pairs = sp_case(work["model"])
    batch = pack_pairs(pairs, pad_token_id=rm.tokenizer.pad_token_id)  # one rank: no padding at all
    scores = rm.batch_scorer(batch)
    loss = reward_loss(scores).total
    loss.backward()
    grads = {n: p.grad for n, p in rm.model.named_parameters() if p.grad is not None}
    parts = [torch.load(work["root"] / f"sp{sp}" / f"rank{r}.pt", weights_only=False) for r in range(sp)]
    assert parts[0]["length"] % sp == 0 and parts[0]["length"] > parts[0]["n_tokens"]  # a dummy pad segment
    bounds = [r * parts[0]["length"] // sp for r in range(sp + 1)]
    positions = parts[0]["reward_positions"].tolist()
    holders = {r for r in range(sp) for pos in positions if bounds[r] <= pos < bounds[r + 1]}
    assert len(holders) > 1  # reward tokens live on several ranks: the gather matters
    for part in parts:
        torch.testing.assert_close(part["scores"], scores.detach(), rtol=0, atol=1e-5)
        assert part["loss"].item() == pytest.approx(loss.item(), abs=1e-5)
    assert grads.keys() == parts[0]["grads"].keys()
    for name, grad in grads.items():
        # each rank holds the gradient through its own shard; together they make the whole
        torch.testing.assert_close(sum(part["grads"][name] for part in parts), grad, rtol=1e-5, atol=1e-6)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert all(not torch.allclose(part["grads"][name], grads[name]) for part in parts)


def test_sequence_parallel_training_follows_the_one_rank_trajectory(work, one_rank, two_ranks):
    for run, reference in (("sp", "one"), ("fsdp_sp", "one"), ("sp_lora", "one_lora")):
        _assert_same_trajectory(metrics(work["root"] / run), metrics(work["root"] / reference))
        assert _scores(work["root"] / run) == pytest.approx(_scores(work["root"] / reference), abs=1e-5), run
    evaluated = [m["eval_accuracy"] for m in metrics(work["root"] / "sp_lora") if "eval_accuracy" in m]
    assert evaluated == [m["eval_accuracy"] for m in metrics(work["root"] / "one_lora") if "eval_accuracy" in m]
    assert len(evaluated) == 1  # after step 2 (the end-of-run evaluation goes to eval.json)
    assert json.loads((work["root"] / "sp_lora" / "eval.json").read_text())["n"] == 8


@pytest.mark.slow
def test_four_ranks_as_two_data_parallel_groups_of_two_sp_ranks(work, one_rank, four_ranks):
    _assert_same_trajectory(metrics(work["root"] / "dp2sp2"), one_rank)
    assert _scores(work["root"] / "dp2sp2") == pytest.approx(_scores(work["root"] / "one"), abs=1e-5)


def test_fsdp_two_ranks_matches_ddp(work, one_rank, two_ranks):
    _assert_same_trajectory(metrics(work["root"] / "fsdp"), metrics(work["root"] / "ddp"))
    assert _scores(work["root"] / "fsdp") == pytest.approx(_scores(work["root"] / "ddp"), abs=1e-5)
    # the checkpoint holds the full (gathered) weights in the usual format: export reads it
    from engine.export import export_reward_model

    exported = export_reward_model(work["root"] / "fsdp" / "checkpoints" / "step-000004", work["root"] / "fsdp_export")
    assert _scores(exported) == pytest.approx(_scores(work["root"] / "fsdp"), abs=1e-6)


@pytest.mark.parametrize("run,reference", [("ddp_crash", "ddp"), ("fsdp_crash", "fsdp")])
def test_a_checkpoint_saved_by_two_ranks_resumes_on_two_ranks(work, two_ranks, run, reference):
    assert [m["step"] for m in two_ranks[run]] == [1, 2]  # the first launch stopped after step 2
    out = work["root"] / run
    assert json.loads((out / "training_complete.json").read_text())["resumed_from"] == 2
    assert (out / "checkpoints" / "step-000002" / "rng-rank1.pt").is_file()
    _assert_same_trajectory(metrics(out), metrics(work["root"] / reference), tol=1e-6)
    assert _scores(out) == pytest.approx(_scores(work["root"] / reference), abs=1e-6)


def test_resuming_on_another_number_of_processes_is_refused(work, two_ranks):
    from engine.train_config import TrainConfig
    from engine.training import train_reward_model

    config = TrainConfig(**json.loads((work["root"] / "ddp" / "train_config.json").read_text()))
    with pytest.raises(EngineError, match="saved by 2 rank"):
        train_reward_model(config, make_pairs(32), resume=True, progress=False)


def test_sp_size_must_divide_the_processes_and_the_heads():
    from engine.distributed import DistContext
    from engine.sequence_parallel import check_heads, parallel_layout

    with pytest.raises(EngineError, match="must divide the number of processes"):
        parallel_layout(DistContext(0, 1, 0, torch.device("cpu")), 2)
    with pytest.raises(EngineError, match="6 heads do not divide by sp_size=4"):
        check_heads(tiny_llama_config(300, hidden_size=48, num_attention_heads=6, num_key_value_heads=2), 4)
    check_heads(tiny_llama_config(300), 4)  # 4 heads, 2 kv heads: kv heads are repeated
