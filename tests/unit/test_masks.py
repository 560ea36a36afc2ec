"""Action masks: what modules see, masked logits, the batched sampler, evaluation, serving."""

import gymnasium as gym
import numpy as np
import pytest

from rl_platform.envs.pettingzoo import PettingZooEnv
from rl_platform.sampling import GlobalStateEnv, GlobalStateObservations, with_one_hot

SOURCE = "pettingzoo:rl_platform.envs.masked_choice:parallel_env"


def masked_choice(mask_in="obs", **kwargs):
    return {"source": SOURCE, "mask_in": mask_in, **kwargs}


def global_state_env(mask_in="obs", agent_id=True, **kwargs):
    return GlobalStateEnv(
        {
            "env_id": "masked_choice",
            "env_config": masked_choice(mask_in, **kwargs),
            "agent_id": agent_id,
        }
    )


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_the_adapter_gives_rllibs_convention_for_both_pettingzoo_conventions(mask_in):
    env = PettingZooEnv(masked_choice(mask_in))
    space = env.observation_spaces["player_0"]
    assert set(space.spaces) == {"observations", "action_mask"}
    assert space["action_mask"].shape == (5,)
    obs, infos = env.reset(seed=3)
    for _ in range(4):
        for value in obs.values():
            assert space.contains(value)
            assert value["action_mask"].any()
            # the mask is the env's own: its feature vector starts with it
            np.testing.assert_array_equal(value["action_mask"], value["observations"][:5])
        obs, _, _, _, infos = env.step({a: 1 for a in obs})


def test_an_env_without_masks_keeps_its_box_observations():
    env = PettingZooEnv({"source": "pettingzoo:mpe2.simple_spread_v3:parallel_env"})
    assert isinstance(env.observation_spaces["agent_0"], gym.spaces.Box)
    views = GlobalStateObservations(
        env.possible_agents, env.observation_spaces, env.state_space, agent_id=True
    )
    assert not views.masked and set(views.spaces["agent_0"].spaces) == {"obs", "state"}
    assert "action_mask" not in views.empty((2,))


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_modules_see_obs_state_and_a_float_mask(mask_in):
    env = global_state_env(mask_in)
    space = env.observation_spaces["player_1"]
    assert set(space.spaces) == {"obs", "state", "action_mask"}
    assert space["action_mask"] == gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    assert space["obs"].shape == (6 + 2,)  # features + the agent one-hot; no mask in it
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        for n, agent in enumerate(env.possible_agents):
            value = obs[agent]
            assert space.contains(value)
            assert value["action_mask"].dtype == np.float32
            assert set(np.unique(value["action_mask"])) <= {0.0, 1.0}
            np.testing.assert_array_equal(value["action_mask"], value["obs"][:5])
            assert value["obs"][6 + n] == 1.0  # its one-hot
        obs, *_ = env.step(dict.fromkeys(obs, 2))


def test_the_batched_views_have_room_for_masks_and_fill_them():
    mask = gym.spaces.Box(0, 1, (3,), np.int8)
    box = gym.spaces.Box(-1, 1, (4,), np.float32)
    spaces = {a: gym.spaces.Dict({"observations": box, "action_mask": mask}) for a in "ab"}
    views = GlobalStateObservations(["a", "b"], spaces, gym.spaces.Box(-1, 1, (8,)), True)
    out = views.empty((7, 2))
    assert out["action_mask"].shape == (7, 2, 2, 3) and out["obs"].shape == (7, 2, 2, 6)
    masks = np.random.default_rng(0).integers(0, 2, (7, 2, 2, 3)).astype(np.float32)
    views.fill(out, np.zeros((7, 2, 2, 4)), np.zeros((7, 2, 8)), masks)
    np.testing.assert_array_equal(out["action_mask"], masks)
    np.testing.assert_array_equal(out["obs"][..., 4:], np.broadcast_to(np.eye(2), (7, 2, 2, 2)))


def test_agents_with_and_without_masks_side_by_side():
    mask = gym.spaces.MultiBinary(3)
    box = gym.spaces.Box(-1, 1, (4,), np.float32)
    spaces = {"a": gym.spaces.Dict({"observations": box, "action_mask": mask}), "b": box}
    views = GlobalStateObservations(["a", "b"], spaces, gym.spaces.Box(-1, 1, (8,)), False)
    assert not views.uniform
    assert "action_mask" in views.spaces["a"].spaces
    assert "action_mask" not in views.spaces["b"].spaces


def test_other_dict_observations_and_images_are_still_refused():
    image = gym.spaces.Box(0, 1, (4, 4), np.float32)
    with pytest.raises(ValueError, match="flat Box"):
        with_one_hot(image, 2, "x")
    odd = gym.spaces.Dict({"observations": gym.spaces.Box(0, 1, (2,)), "action_mask": image})
    with pytest.raises(ValueError, match="flat 'action_mask'"):
        GlobalStateObservations(["a"], {"a": odd}, gym.spaces.Box(0, 1, (2,)), False)


def masked_module(obs_key="obs", critic_key="state", inference_only=False, width=4):
    from rl_platform.algorithms.mappo import ActorCriticModule

    spaces = {obs_key: gym.spaces.Box(-1, 1, (width,), np.float32)}
    if critic_key != obs_key:
        spaces[critic_key] = gym.spaces.Box(-1, 1, (6,), np.float32)
    spaces["action_mask"] = gym.spaces.Box(0, 1, (5,), np.float32)
    return ActorCriticModule(
        observation_space=gym.spaces.Dict(spaces),
        action_space=gym.spaces.Discrete(5),
        inference_only=inference_only,
        model_config={
            "actor_hiddens": [16],
            "critic_hiddens": [16],
            "actor_obs_key": obs_key,
            "critic_obs_key": critic_key,
            "use_value_norm": False,
        },
    )


def random_masks(rows, n_actions=5, seed=0):
    rng = np.random.default_rng(seed)
    masks = (rng.random((rows, n_actions)) < 0.4).astype(np.float32)
    masks[np.arange(rows), rng.integers(n_actions, size=rows)] = 1.0  # at least one allowed
    return masks


@pytest.mark.parametrize(
    ("obs_key", "critic_key"), [("obs", "state"), ("observations", "observations")]
)
def test_the_actor_critic_masks_its_logits_in_every_forward_pass(obs_key, critic_key):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical

    module = masked_module(obs_key, critic_key)
    with torch.no_grad():
        module.pi_head.bias.copy_(torch.tensor([50.0, 0, 0, 0, 0]))  # action 0 tempts it
    masks = random_masks(2000)
    obs = {k: torch.randn(2000, *space.shape) for k, space in module.observation_space.items()}
    obs["action_mask"] = torch.from_numpy(masks)
    for forward in (module.forward_exploration, module.forward_inference, module.forward_train):
        logits = forward({Columns.OBS: dict(obs)})[Columns.ACTION_DIST_INPUTS]
        assert torch.isfinite(logits).all()
        dist = TorchCategorical.from_logits(logits)
        sampled = dist.sample().numpy()
        greedy = logits.argmax(-1).numpy()
        assert masks[np.arange(2000), sampled].all() and masks[np.arange(2000), greedy].all()
    # without a mask the same module acts as before (action 0 wins)
    del obs["action_mask"]
    logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert (logits.argmax(-1) == 0).all()


def test_masked_logits_keep_the_ppo_loss_finite():
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical

    module = masked_module()
    masks = torch.from_numpy(random_masks(64))
    batch = {Columns.OBS: {"obs": torch.randn(64, 4), "state": torch.randn(64, 6)}}
    batch[Columns.OBS]["action_mask"] = masks
    logits = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    dist = TorchCategorical.from_logits(logits)
    actions = dist.sample()
    loss = -(dist.logp(actions).mean() + 0.01 * dist.entropy().mean() + dist.kl(dist).mean())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def ppo_experiment(algorithm="ppo", mask_in="obs", sampler="stock", **resources):
    from rl_platform.config import load_experiment

    return load_experiment(
        {
            "name": "masks",
            "seed": 0,
            "env": {"id": "masked_choice", "config": {"mask_in": mask_in}},
            "algorithm": {"id": algorithm},
            "resources": {"num_env_runners": 0, "sampler": sampler, **resources},
            "stop": {"training_iteration": 1},
        }
    )


def test_ppo_on_a_masked_env_gets_the_masking_module_and_not_otherwise():
    from rl_platform.algorithms.mappo import ActorCriticModule
    from rl_platform.builder import build_algorithm_config

    config = build_algorithm_config(ppo_experiment(mask_in="info"))
    spec = config.rl_module_spec
    assert spec.module_class is ActorCriticModule
    assert spec.model_config["actor_obs_key"] == "observations"
    assert spec.model_config["use_value_norm"] is False
    unmasked = load_experiment_like("coverage")
    assert build_algorithm_config(unmasked).rl_module_spec.module_class is not ActorCriticModule


def load_experiment_like(env_id):
    from rl_platform.config import load_experiment

    return load_experiment(
        {
            "name": "plain",
            "env": {"id": env_id},
            "algorithm": {"id": "ppo"},
            "resources": {"num_env_runners": 0, "sampler": "stock"},
            "stop": {"training_iteration": 1},
        }
    )


def batched_runner(algorithm, mask_in, copies=8):
    from rl_platform.builder import build_algorithm_config
    from rl_platform.sampling import BatchedEnvRunner

    config = build_algorithm_config(
        ppo_experiment(algorithm, mask_in, "batched", num_envs_per_env_runner=copies)
    )
    assert config.env_runner_cls is BatchedEnvRunner
    runner = BatchedEnvRunner(config=config)
    return runner, count_illegal(runner.env.core)  # what the env itself judged


def count_illegal(core):
    """The list the env's `infos[agent]["illegal"]` flags of `core`'s copies go to."""
    illegal = []
    for b, step in enumerate(core._steps):

        def counted(actions, step=step):
            out = step(actions)
            illegal.extend(info["illegal"] for info in out[-1].values())
            return out

        core._steps[b] = counted
    return illegal


def masked_taken(episodes):
    """(masked actions taken, actions, mean share of allowed actions) by the observed masks."""
    bad = total = 0
    allowed = []
    for episode in episodes:
        for sa in episode.agent_episodes.values():
            masks = sa.get_observations(slice(0, len(sa)))["action_mask"]
            actions = np.asarray(sa.get_actions(slice(0, len(sa))))
            bad += int((masks[np.arange(len(actions)), actions] == 0).sum())
            total += len(actions)
            allowed.append(masks.mean())
    return bad, total, float(np.mean(allowed))


@pytest.mark.parametrize("mask_in", ["obs", "info"])
@pytest.mark.parametrize("algorithm", ["mappo", "ippo", "ppo"])
def test_the_batched_sampler_never_samples_a_masked_action(algorithm, mask_in):
    runner, illegal = batched_runner(algorithm, mask_in)
    bad, total, allowed = masked_taken(runner.sample(num_timesteps=5_000))  # 2 agents each
    assert total >= 10_000 and len(illegal) >= 10_000
    assert bad == 0 and sum(illegal) == 0
    assert allowed < 0.75  # the masks do forbid actions
    bad, total, _ = masked_taken(runner.sample(num_timesteps=1_000, explore=False))
    assert bad == 0 and total >= 2_000 and sum(illegal) == 0


def test_the_batched_core_reports_the_views_masks():
    from rl_platform.envs.pettingzoo import ParallelEnvCore, PettingZooConfig

    for mask_in in ("obs", "info"):
        core = ParallelEnvCore(PettingZooConfig.model_validate(masked_choice(mask_in)), 3)
        view = PettingZooEnv(masked_choice(mask_in))
        core.reset(np.random.default_rng(5))
        seed = np.random.default_rng(5).integers(0, 2**31 - 1, size=3).tolist()[0]
        obs, _ = view.reset(seed=seed)
        for _ in range(6):
            masks = core.action_masks()
            assert masks.shape == (3, 2, 5) and masks.dtype == np.float32
            np.testing.assert_array_equal(masks[0], [obs[a]["action_mask"] for a in view.agents])
            actions = masks.argmax(-1)
            core.step(actions, np.random.default_rng(0))
            obs, *_ = view.step(dict(zip(view.agents, actions[0].tolist())))


def tempted_policy(obs_key="obs", critic_key="state", width=4):
    """A trained policy (live modules) whose logits always favour action 0."""
    import torch

    from rl_platform.evaluation.policy import TrainedPolicy

    module = masked_module(obs_key, critic_key, inference_only=True, width=width)
    with torch.no_grad():
        module.pi_head.bias.copy_(torch.tensor([50.0, 0, 0, 0, 0]))
    return TrainedPolicy.from_modules(
        {"shared": module}, {"player_0": "shared", "player_1": "shared"}
    )


@pytest.mark.parametrize(
    ("obs_key", "critic_key"), [("obs", "state"), ("observations", "observations")]
)
def test_greedy_actions_are_the_best_allowed_ones(obs_key, critic_key):
    policy = tempted_policy(obs_key, critic_key)
    masks = random_masks(600).reshape(300, 2, 5)
    obs = np.random.default_rng(1).normal(size=(300, 2, 4)).astype(np.float32)
    actions = policy.actions(obs, masks)
    assert masks[np.arange(300)[:, None], np.arange(2), actions].all()
    offered = masks[..., 0] == 1
    assert (actions[offered] == 0).all()  # the favourite where it is allowed
    assert (policy.actions(obs) == 0).all()  # no masks: the favourite everywhere


def counted_core(mask_in, copies):
    from rl_platform.envs.pettingzoo import ParallelEnvCore, PettingZooConfig

    core = ParallelEnvCore(PettingZooConfig.model_validate(masked_choice(mask_in)), copies)
    return core, count_illegal(core)


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_evaluation_play_never_takes_a_masked_action(mask_in):
    from rl_platform.evaluation.baselines import random_actions
    from rl_platform.evaluation.rollout import Perturbation, play, seeded_job

    policy = tempted_policy(width=6)
    core, illegal = counted_core(mask_in, 40)
    job = seeded_job(
        "policy", "clean", "default", 40, seed=0, perturbation=Perturbation(action_noise=0.3)
    )
    played = play(core, policy.actions, job, reset_policy=policy.reset)
    assert len(illegal) == 40 * 25 * 2 and sum(illegal) == 0
    assert played.returns.mean() > 0  # offered action 0 is taken: a mean reward above 0.2
    # a mask-unaware random policy plays uniformly among the allowed actions
    rng = np.random.default_rng(0)
    core, illegal = counted_core(mask_in, 40)
    play(core, lambda obs: random_actions(core.action_space, obs.shape[:2], rng), job)
    assert len(illegal) == 2000 and sum(illegal) == 0


def test_allowed_actions_are_uniform_among_the_allowed():
    from rl_platform.evaluation.rollout import allowed_actions

    rng = np.random.default_rng(0)
    masks = np.zeros((20_000, 1, 5), np.float32)
    masks[..., [1, 3, 4]] = 1
    drawn = allowed_actions(rng.integers(0, 5, (20_000, 1)), masks, rng)
    counts = np.bincount(drawn.ravel(), minlength=5) / 20_000
    np.testing.assert_allclose(counts, [0, 1 / 3, 0, 1 / 3, 1 / 3], atol=0.015)


def masked_export(root, algorithm="mappo"):
    """A checkpoint of one fresh masking module for masked_choice, tempted by action 0."""
    import torch

    from rl_platform.checkpoints import export_policies

    experiment = ppo_experiment(algorithm)
    if algorithm == "ppo":
        module = masked_module("observations", "observations", width=6)
    else:
        module = masked_module("obs", "state", width=6)
    with torch.no_grad():
        module.pi_head.bias.copy_(torch.tensor([50.0, 0, 0, 0, 0]))
    module.save_to_path(str(root / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(root, experiment.model_dump(mode="json"))
    return root


@pytest.fixture(params=["mappo", "ppo"])
def service(request, tmp_path):
    from rl_platform.serving.arms import ServerConfig, resolve_arm
    from rl_platform.serving.service import PolicyService

    arm = resolve_arm(masked_export(tmp_path / "checkpoint_000000", request.param))
    return PolicyService(ServerConfig(champion=arm, batching=False))


def act_request(masks=None, agents=("player_0", "player_1")):
    from rl_platform.serving.schemas import ActRequest

    obs = {a: [0.5] * 6 for a in agents}
    body = {"observations": obs}
    if masks is not None:
        body["action_masks"] = masks
    return ActRequest.model_validate(body)


def test_the_export_keeps_the_mask_as_data(tmp_path):
    import json

    export = masked_export(tmp_path / "checkpoint_000000", "ppo") / "policies"
    manifest = json.loads((export / "manifest.json").read_text())
    space = manifest["modules"]["shared"]["observation_space"]
    assert space["type"] == "Dict" and space["spaces"]["action_mask"]["shape"] == [5]
    assert not list(export.glob("*.pkl"))


def test_a_served_action_is_never_masked(service):
    from rl_platform.serving.service import CHAMPION

    info = service.info()["action_masks"]
    assert info == {"accepted": True, "env_has_masks": True, "length": 5}
    rng = np.random.default_rng(0)
    items, given = [], []
    for _ in range(200):
        masks = {a: random_masks(1, seed=int(rng.integers(1 << 30)))[0].astype(int).tolist()
                 for a in ("player_0", "player_1")}  # fmt: skip
        request = act_request(masks)
        obs, present = service.parse(request)
        parsed = service.parse_masks(request)
        items.append((CHAMPION, obs, present, parsed))
        given.append(parsed)
    for decision, masks in zip(service.act(items), given):
        assert masks[np.arange(2), decision.actions].all()
    # no mask: the module's favourite, action 0
    obs, present = service.parse(act_request())
    (decision,) = service.act([(CHAMPION, obs, present, service.parse_masks(act_request()))])
    assert decision.actions.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("masks", "kind"),
    [
        ({"player_0": [1, 0, 1]}, "wrong_length"),
        ({"player_0": [0, 0, 0, 0, 0]}, "all_masked"),
        ({"player_0": [1, 2, 0, 0, 0]}, "not_binary"),
        ({"player_9": [1, 1, 1, 1, 1]}, "mask_without_observation"),
    ],
)
def test_a_malformed_mask_is_a_clear_request_error(service, masks, kind):
    from rl_platform.serving.service import RequestError

    with pytest.raises(RequestError) as err:
        service.parse_masks(act_request(masks))
    (error,) = err.value.errors
    assert error["type"] == kind and error["loc"][:3] == ("body", "action_masks", next(iter(masks)))


@pytest.mark.parametrize("bad", [[1, 0.5, 1, 1, 1], [True, 1, 1, 1, 1], ["1", 1, 1, 1, 1], []])
def test_the_schema_takes_only_integer_masks(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        act_request({"player_0": bad})


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_envs_check_runs_pettingzoos_own_tests_on_masked_choice(mask_in):
    from rl_platform.envs.checks import check_env

    results = {r.name: r for r in check_env("masked_choice", {"mask_in": mask_in})}
    for name in ("pettingzoo parallel_api_test", "pettingzoo parallel_seed_test"):
        assert results[name].passed and not results[name].skipped, results[name]
    assert all(r.passed for r in results.values())


@pytest.mark.parametrize("algorithm", ["mappo", "ippo", "ppo"])
def test_masked_choice_runs_on_the_batched_runner_by_default(algorithm, caplog):
    import logging

    from rl_platform.builder import build_algorithm_config
    from rl_platform.sampling import BatchedEnvRunner

    with caplog.at_level(logging.INFO, logger="rl_platform.builder"):
        config = build_algorithm_config(ppo_experiment(algorithm, "info", "auto"))
    assert config.env_runner_cls is BatchedEnvRunner
    assert "sampler: stock" not in caplog.text


def test_policy_scores_play_the_masks(tmp_path):
    """A module tempted by a mostly masked action scores only legal moves (every legal one
    pays at least 0.2 a step; a masked one would pay -1)."""
    from rl_platform.evaluation.policy import policy_scores

    scores = policy_scores(masked_export(tmp_path / "checkpoint_000000"), episodes=8, seed=3)
    assert len(scores) == 8 and (scores >= 0.2 * 25).all()
