"""`workbench.models.rewards.reward_function`: TRL's reward-function signature, local and remote, in a GRPO step."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.serving.conftest import running_server
from workbench.errors import WorkbenchError
from workbench.models.rewards import reward_function
from workbench.serving.config import ServeConfig

PROMPTS = [[{"role": "user", "content": "Say hi."}], [{"role": "system", "content": "Be terse."},
                                                      {"role": "user", "content": "Count to 3."}]]
COMPLETIONS = [[{"role": "assistant", "content": "Hi!"}], [{"role": "assistant", "content": "1 2 3"}]]


def test_local_and_remote_reward_functions_agree_in_both_trl_forms(store, rm_dir):
    from engine.data import ScoringItem
    from engine.scoring import load_scorer

    expected = load_scorer(str(rm_dir)).score([ScoringItem(p, c[0]["content"]) for p, c in zip(PROMPTS, COMPLETIONS)])
    local = reward_function(rm="tiny", store=store)
    assert local(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
    # standard form: a plain-text prompt is one user message
    assert local(["Say hi."], ["Hi!"]) == pytest.approx(expected[:1], abs=1e-5)
    assert local.__name__ == "reward_tiny"
    with running_server(store, ServeConfig(log_to_store=True), api_key="k") as (url, _, _):
        remote = reward_function(url=f"{url}/get_reward", api_key="k")
        assert remote(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
        assert remote(["Say hi."], ["Hi!"], trainer_state=SimpleNamespace(global_step=5)) == \
            pytest.approx(expected[:1], abs=1e-5)
        with pytest.raises(WorkbenchError, match="answered 401"):
            reward_function(url=url)(PROMPTS, COMPLETIONS)
    with store.connect() as con:  # the trainer's step became the rollout run's
        steps = sorted(str(json.loads(c)["step"]) for (c,) in con.execute("SELECT config FROM runs WHERE kind = 'rollout'").fetchall())
    assert steps == ["5", "None"]
    with pytest.raises(WorkbenchError, match="exactly one"):
        reward_function()
    with pytest.raises(WorkbenchError, match="cannot reach"):
        remote(PROMPTS, COMPLETIONS)  # the server is gone


def test_one_grpo_step_with_the_workbench_reward(store, tmp_path, tiny_model_dir):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Tell me about {w}."}]}
                                 for w in ("cats", "dogs", "owls", "bees")])
    calls = []
    reward = reward_function(rm="tiny", store=store)

    def logged_reward(prompts, completions, **kwargs):
        calls.append(len(completions))
        return reward(prompts, completions, **kwargs)

    config = GRPOConfig(output_dir=str(tmp_path / "grpo"), use_cpu=True, max_steps=1, per_device_train_batch_size=4,
                        num_generations=4, max_completion_length=8, learning_rate=1e-2, report_to=[],
                        logging_steps=1, save_strategy="no", beta=0.0, seed=0)
    trainer = GRPOTrainer(model=policy, reward_funcs=logged_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    trainer.train()
    assert calls and sum(calls) >= 4
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert logged and all(isinstance(entry["reward"], float) for entry in logged)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach().cpu(), before[n])]
    assert changed  # the step trained on the workbench reward
