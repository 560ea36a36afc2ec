"""Sampling speed: RLlib's stock env runner against the batched sampler, on trading (5 agents)
and on PettingZoo's MPE simple_spread (3 agents).

How to run:  python bench/sampling.py [--quick]
Prints a table and writes bench/results/sampling.json. In one run, on one machine, with
the same MAPPO module (weights copied):

* ``raw_core``: the batched core alone, pre-sampled random actions, B = 64 and 1024;
* ``sampling``: env and agent steps/s that ``sample()`` returns (with the
  ``get_metrics()`` call each training iteration makes after it), in-process (no Ray
  cluster), stock runner at B = 1 and 64, batched runner at B = 1, 64 and 1024, 50
  steps per env copy a call; the targets are batched >= 20x stock and >= 25% of the raw
  core rate (at B = 1024);
* ``training``: wall time of the same fixed MAPPO budget with each sampler;
* ``end_to_end``: MAPPO agent steps/s with the batched sampler, 600 envs, 60,000 env
  steps ("frames") a batch, one minibatch pass (one epoch, one minibatch).
* ``mpe2_simple_spread``: ``pettingzoo:mpe2.simple_spread_v3:parallel_env`` at B = 32:
  ``raw_env`` (B ParallelEnv copies stepped with pre-drawn random actions, no policy),
  stock and batched ``sample()`` rates (MAPPO, shared policy); the targets are batched
  >= 2.5x stock and >= 60% of the raw env rate.
* ``vmas_navigation``: ``vmas:navigation`` at B = 600: ``raw_env`` (one VMAS world of B
  copies stepped with pre-drawn random torch actions, copies reset when done, no
  policy) and the batched ``sample()`` rate (MAPPO, shared policy).

Results to expect on the 2-core development machine: see the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
AGENTS = 5
TRADING = {"id": "trading", "config": {"num_agents": AGENTS, "episode_length": 200}}
MPE = {"id": "pettingzoo:mpe2.simple_spread_v3:parallel_env", "config": {}}
MPE_COPIES = 32
VMAS = {"id": "vmas:navigation", "config": {}}
VMAS_COPIES = 600


def experiment(sampler: str, envs: int, runners: int = 0, env: dict | None = None, **hyperparams):
    from rl_platform.config import load_experiment

    return load_experiment(
        {
            "name": f"bench_sampling_{sampler}",
            "seed": 0,
            "env": env or TRADING,
            "algorithm": {"id": "mappo", "shared_policy": True, "hyperparams": hyperparams},
            "resources": {
                "num_env_runners": runners,
                "num_envs_per_env_runner": envs,
                "sampler": sampler,
            },
            "stop": {"training_iteration": 1},
        }
    )


def raw_core_rate(batch: int, seconds: float) -> float:
    """Env steps/s of the trading core alone (random actions drawn before timing)."""
    from rl_platform.envs.trading import TradingEnv

    env = TradingEnv({"num_agents": AGENTS, "episode_length": 200})
    core = env.core_cls(env.env_config, batch_size=batch)
    rng = np.random.default_rng(0)
    core.reset(rng)
    space = core.action_space
    actions = [
        rng.uniform(space.low, space.high, (batch, AGENTS, *space.shape)).astype(np.float32)
        for _ in range(16)
    ]
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = core.step(actions[steps % 16], rng)
        done = result.terminated | result.truncated
        if done.any():
            core.reset(rng, mask=done)
        core.observe()
        core.global_state()
        steps += 1
    return steps * batch / (time.perf_counter() - started)


def parallel_env_rate(env_id: str, batch: int, seconds: float) -> float:
    """Env steps/s of B PettingZoo ParallelEnv copies stepped one after the other with
    random actions drawn before timing (no policy): the env's own speed."""
    from rl_platform.envs.pettingzoo import make_parallel_env

    envs = [make_parallel_env(env_id, {}) for _ in range(batch)]
    rng = np.random.default_rng(0)
    for env in envs:
        env.reset(seed=int(rng.integers(2**31 - 1)))
    agents = list(envs[0].possible_agents)
    space = envs[0].action_space(agents[0])
    space.seed(0)
    actions = [
        [dict(zip(agents, (space.sample() for _ in agents))) for _ in range(batch)]
        for _ in range(16)
    ]
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for env, action in zip(envs, actions[steps % 16]):
            if not env.agents:
                env.reset(seed=int(rng.integers(2**31 - 1)))
            env.step({a: action[a] for a in env.agents})
        steps += 1
    return steps * batch / (time.perf_counter() - started)


def vmas_rate(scenario: str, batch: int, seconds: float) -> float:
    """Env steps/s of one VMAS world of `batch` copies, as the platform makes it (CPU,
    100-step episodes), with random actions drawn before timing (no policy)."""
    import torch
    import vmas

    env = vmas.make_env(
        scenario, num_envs=batch, device="cpu", continuous_actions=True, max_steps=100,
        terminated_truncated=True, seed=0,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    actions = [
        [
            torch.rand(batch, env.get_agent_action_size(agent), generator=generator) * 2 - 1
            for agent in env.agents
        ]
        for _ in range(16)
    ]
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        _, _, terminated, truncated, _ = env.step(actions[steps % 16])
        done = terminated | truncated
        if done.all():
            env.reset()
        else:
            for index in done.nonzero().flatten().tolist():
                env.reset_at(index, return_observations=False)
        steps += 1
    return steps * batch / (time.perf_counter() - started)


def runner(sampler: str, envs: int, env: dict | None = None):
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    from rl_platform.builder import build_algorithm_config
    from rl_platform.sampling import BatchedEnvRunner

    config = build_algorithm_config(experiment(sampler, envs, env=env))
    cls = BatchedEnvRunner if sampler == "batched" else MultiAgentEnvRunner
    if sampler == "batched":
        assert config.env_runner_cls is BatchedEnvRunner, "the batched runner fell back"
    return cls(config=config)


def sampling_rate(
    sampler: str, envs: int, seconds: float, weights, env: dict | None = None
) -> dict[str, float]:
    """Env and agent steps/s of ``sample()`` + ``get_metrics()``, what a training iteration
    asks of a runner (a rollout fragment of 50 steps per env copy per call)."""
    r = runner(sampler, envs, env)
    r.set_state({"rl_module": weights})
    fragment = max(envs * 50, 200)
    for _ in range(2):  # warm up: the process's memory grows to its steady size
        r.sample(num_timesteps=fragment)
        r.get_metrics()
    env_steps = agent_steps = 0
    elapsed = 0.0
    while elapsed < seconds:
        started = time.perf_counter()
        episodes = r.sample(num_timesteps=fragment)
        r.get_metrics()
        elapsed += time.perf_counter() - started
        env_steps += sum(e.env_steps() for e in episodes)  # counted off the clock
        agent_steps += sum(e.agent_steps() for e in episodes)
        del episodes
    r.stop()
    return {"env_steps_per_s": env_steps / elapsed, "agent_steps_per_s": agent_steps / elapsed}


def training_time(sampler: str, iterations: int, envs: int, batch: int) -> dict[str, float]:
    """Wall time of `iterations` MAPPO iterations of `batch` env steps each."""
    from rl_platform.builder import build_algorithm_config

    exp = experiment(
        sampler, envs, train_batch_size_per_learner=batch, minibatch_size=batch // 4,
        num_epochs=4,
    )  # fmt: skip
    algo = build_algorithm_config(exp).build_algo()
    try:
        started = time.perf_counter()
        for _ in range(iterations):
            result = algo.train()
        elapsed = time.perf_counter() - started
        steps = result["num_env_steps_sampled_lifetime"]
        return {
            "wall_s": elapsed,
            "env_steps": int(steps),
            "return_mean": float(result["env_runners"].get("episode_return_mean", float("nan"))),
        }
    finally:
        algo.stop()


def end_to_end(iterations: int, envs: int, batch: int) -> dict[str, float]:
    """MAPPO agent steps/s with the batched sampler, one minibatch pass per iteration."""
    from rl_platform.builder import build_algorithm_config

    exp = experiment(
        "batched", envs, train_batch_size_per_learner=batch, minibatch_size=batch,
        num_epochs=1,
    )  # fmt: skip
    algo = build_algorithm_config(exp).build_algo()
    try:
        algo.train()  # warm up
        started = time.perf_counter()
        for _ in range(iterations):
            algo.train()
        elapsed = time.perf_counter() - started
        agent_steps = iterations * batch * AGENTS
        return {
            "iterations": iterations,
            "wall_s": elapsed,
            "agent_steps_per_s": agent_steps / elapsed,
            "env_steps_per_s": iterations * batch / elapsed,
        }
    finally:
        algo.stop()


def mpe_rows(copies: int, seconds: float) -> dict:
    """MPE simple_spread: the raw env, the stock and the batched runner at B = `copies`."""
    weights = runner("batched", 1, MPE).get_state(components="rl_module")["rl_module"]
    raw = parallel_env_rate(MPE["id"], copies, seconds)
    print(f"mpe2 raw env B={copies:5d}: {raw:10.0f} env steps/s", flush=True)
    rows: dict = {"env": MPE["id"], "copies": copies, "raw_env": raw, "sampling": {}}
    for sampler in ("stock", "batched"):
        rate = sampling_rate(sampler, copies, seconds, weights, MPE)
        rows["sampling"][f"{sampler}_B{copies}"] = rate
        print(f"mpe2 {sampler:8s} B={copies:5d}: {rate['env_steps_per_s']:10.0f} env steps/s, "
              f"{rate['agent_steps_per_s']:10.0f} agent steps/s", flush=True)  # fmt: skip
    batched = rows["sampling"][f"batched_B{copies}"]["env_steps_per_s"]
    rows["batched_vs_stock"] = batched / rows["sampling"][f"stock_B{copies}"]["env_steps_per_s"]
    rows["share_of_raw_env"] = batched / raw
    return rows


def vmas_rows(copies: int, seconds: float) -> dict:
    """VMAS navigation: the raw VMAS world and the batched runner at B = `copies`."""
    weights = runner("batched", 1, VMAS).get_state(components="rl_module")["rl_module"]
    raw = vmas_rate(VMAS["id"].removeprefix("vmas:"), copies, seconds)
    print(f"vmas raw env B={copies:5d}: {raw:10.0f} env steps/s", flush=True)
    rate = sampling_rate("batched", copies, seconds, weights, VMAS)
    print(f"vmas batched  B={copies:5d}: {rate['env_steps_per_s']:10.0f} env steps/s, "
          f"{rate['agent_steps_per_s']:10.0f} agent steps/s", flush=True)  # fmt: skip
    return {
        "env": VMAS["id"],
        "copies": copies,
        "raw_env": raw,
        "sampling": {f"batched_B{copies}": rate},
        "share_of_raw_env": rate["env_steps_per_s"] / raw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Short timings (a smoke run).")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    seconds = 1.0 if args.quick else 4.0

    import torch

    from rl_platform.ray_session import init_ray, shutdown_ray

    torch.set_num_threads(1)
    weights = runner("batched", 1).get_state(components="rl_module")["rl_module"]
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "commit": commit(),
        "env": {"id": "trading", "num_agents": AGENTS, "episode_length": 200},
        "raw_core": {str(b): raw_core_rate(b, seconds) for b in (64, 1024)},
        "sampling": {},
    }
    for sampler, sizes in (("stock", (1, 64)), ("batched", (1, 64, 1024))):
        for b in sizes:
            rate = sampling_rate(sampler, b, seconds, weights)
            results["sampling"][f"{sampler}_B{b}"] = rate
            print(f"{sampler:8s} B={b:5d}: {rate['env_steps_per_s']:10.0f} env steps/s, "
                  f"{rate['agent_steps_per_s']:10.0f} agent steps/s", flush=True)  # fmt: skip
    stock = max(v["env_steps_per_s"] for k, v in results["sampling"].items() if "stock" in k)
    best = results["sampling"]["batched_B1024"]["env_steps_per_s"]
    results["speedup_vs_best_stock"] = best / stock
    results["share_of_raw_core_B1024"] = best / results["raw_core"]["1024"]
    results["mpe2_simple_spread"] = mpe_rows(MPE_COPIES, seconds)
    results["vmas_navigation"] = vmas_rows(VMAS_COPIES, seconds)

    init_ray(num_cpus=2)  # a private Ray on 127.0.0.1 (rl_platform.ray_session)
    try:
        iterations, batch = (2, 4000) if args.quick else (5, 12000)
        results["training"] = {
            "budget": {"iterations": iterations, "env_steps_per_iteration": batch, "envs": 64},
            "stock": training_time("stock", iterations, 64, batch),
            "batched": training_time("batched", iterations, 64, batch),
        }
        e2e = (1, 600, 12000) if args.quick else (3, 600, 60000)
        results["end_to_end"] = {"envs": e2e[1], "batch_env_steps": e2e[2], **end_to_end(*e2e)}
    finally:
        shutdown_ray()

    print(f"raw core: B=64 {results['raw_core']['64']:.0f}, "
          f"B=1024 {results['raw_core']['1024']:.0f} env steps/s")  # fmt: skip
    print(f"batched B=1024 / best stock: {results['speedup_vs_best_stock']:.1f}x; "
          f"share of raw core: {results['share_of_raw_core_B1024']:.0%}")  # fmt: skip
    for name in ("stock", "batched"):
        t = results["training"][name]
        print(f"training, {name:8s}: {t['wall_s']:.1f} s for {t['env_steps']} env steps")
    e = results["end_to_end"]
    print(f"end to end (600 envs, {e['batch_env_steps']} a batch, 1 pass): "
          f"{e['agent_steps_per_s']:.0f} agent steps/s")  # fmt: skip
    m = results["mpe2_simple_spread"]
    print(f"mpe2 simple_spread B={m['copies']}: batched / stock {m['batched_vs_stock']:.1f}x "
          f"(target 2.5x); batched / raw env {m['share_of_raw_env']:.0%} (target 60%)")  # fmt: skip
    v = results["vmas_navigation"]
    print(f"vmas navigation B={v['copies']}: batched / raw env {v['share_of_raw_env']:.0%}")
    out = ROOT / "bench" / "results" / "sampling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
