"""The models the app may load: smollm2, what the store knows, what lies under --models-dir."""

import pytest

from tests.rm_builders import make_hf_rm
from tests.ui.data import make_store
from workbench.runtime import commands
from workbench.models.allowed_models import AllowedModels
from workbench.curate.pair_filter import PairFilter
from workbench.errors import WorkbenchError
from workbench.models.reward_models import register_reward_model
from workbench.store.runs import start_run
from workbench.store import queries


def _model(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed")
    store = make_store(root, prompts=3)
    policy = _model(root / "used-policy")
    start_run(store, "gen-run", "generation", {"policy": {"path": str(policy)}, "policy_spec": str(policy)})
    rm = make_hf_rm(root / "registered-rm")  # registration checks the directory: a real (tiny) reward model
    register_reward_model(store, rm, name="my-rm")
    models = root / "models"
    _model(models / "llama-a")
    _model(models / "family" / "llama-b")
    (models / "q4.gguf").write_bytes(b"GGUF")
    (models / "not-a-model").mkdir()
    outside = _model(root / "outside")
    (models / "link").symlink_to(outside)  # a link the user put in the models dir counts as chosen
    return store, root, AllowedModels(models)


def test_choices_offer_smollm2_known_policies_and_the_models_dir(setup):
    store, root, allowed = setup
    models = root / "models"
    assert allowed.choices(store) == ["smollm2", str(root / "used-policy"), str(models / "family" / "llama-b"),
                                      str(models / "link"), str(models / "llama-a"), str(models / "q4.gguf")]
    assert AllowedModels().choices(store) == ["smollm2", str(root / "used-policy")]


def test_check_model_accepts_only_the_allowed_places(setup):
    store, root, allowed = setup
    models = root / "models"
    for ok in ("smollm2", " smollm2 ", str(root / "used-policy"), str(root / "registered-rm"),
               str(models / "llama-a"), str(models / "family" / "llama-b"), str(models / "q4.gguf"),
               str(models / "link"), str(models / "llama-a") + "/"):
        assert allowed.check_model(store, ok) == ok.strip()
    for bad in ("/etc", str(root / "outside"), str(models), str(models / ".." / "outside"), "relative/dir", "",
                str(models / "llama-a" / ".." / ".." / "outside"), "~"):
        with pytest.raises(WorkbenchError, match="the app does not load model .*use smollm2, a policy or reward "
                                                 f"model the store already knows, or a model under {models}"):
            allowed.check_model(store, bad)
    with pytest.raises(WorkbenchError, match="none was given"):
        AllowedModels().check_model(store, str(models / "llama-a"))


def test_check_reward_model_never_registers_a_new_directory(setup):
    store, root, allowed = setup
    assert allowed.check_reward_model(store, "my-rm@1") == "my-rm@1"
    assert allowed.check_reward_model(store, str(root / "models" / "llama-a"))
    with store.connect() as con:
        before = len(queries.list_reward_models(con))
    for bad in (str(root / "outside"), "ext", "no-such-rm", ""):  # ext: imported scores, no weights to load
        with pytest.raises(WorkbenchError, match="the app does not load reward model.*rm register"):
            allowed.check_reward_model(store, bad)
    with store.connect() as con:
        assert len(queries.list_reward_models(con)) == before


def test_commands_check_models_when_the_app_asks(setup, tmp_path):
    store, root, allowed = setup
    request = commands.SampleRequest(policy="/etc", rm=None)
    commands.sample_command(store, request)  # the CLI's own callers are not restricted
    with pytest.raises(WorkbenchError, match="does not load model '/etc'"):
        commands.sample_command(store, request, allowed)
    with pytest.raises(WorkbenchError, match="does not load reward model"):
        commands.sample_command(store, commands.SampleRequest(rm=str(root / "outside")), allowed)
    with pytest.raises(WorkbenchError, match="does not load model"):
        commands.train_command(store, PairFilter(), commands.TrainRequest(base=str(root / "outside")),
                               tmp_path / "x", allowed)
    with pytest.raises(WorkbenchError, match="does not load reward model"):
        commands.rescore_command(store, str(root / "outside"), allowed)
    argv = commands.train_command(store, PairFilter(), commands.TrainRequest(base=str(root / "models" / "llama-a")),
                                  tmp_path / "x", allowed)
    assert str(root / "models" / "llama-a") in argv


def test_models_dir_must_exist(tmp_path):
    with pytest.raises(WorkbenchError, match="is not a directory"):
        AllowedModels(tmp_path / "missing")


def test_dot_dot_after_a_symlink_cannot_escape_the_models_dir(tmp_path):
    """The OS follows `linked` before `..`: `<models>/linked/../secret-policy` is `<elsewhere>/secret-policy`."""
    store = make_store(tmp_path, prompts=3)
    models = tmp_path / "models"
    models.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "public").mkdir(parents=True)
    _model(elsewhere / "secret-policy")
    (models / "linked").symlink_to(elsewhere / "public")
    _model(models / "secret-policy")  # the name as written would find this one: the OS does not
    _model(models / "family" / "llama")
    allowed = AllowedModels(models)
    escape = f"{models}/linked/../secret-policy"
    assert (models / "linked" / ".." / "secret-policy").resolve() == (elsewhere / "secret-policy").resolve()
    with pytest.raises(WorkbenchError, match="the app does not load model"):
        allowed.check_model(store, escape)
    with pytest.raises(WorkbenchError, match="the app does not load reward model"):
        allowed.check_reward_model(store, escape)
    assert allowed.check_model(store, f"{models}/family/../secret-policy")  # '..' over real directories stays in
    assert allowed.check_model(store, str(models / "linked"))  # a link the user put there is still chosen
