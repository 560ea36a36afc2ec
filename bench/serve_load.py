"""Load test of the policy server on 127.0.0.1: requests/s and latency, batched or not.

How to run:
    python bench/serve_load.py                                   # a fresh trading export
    python bench/serve_load.py --checkpoint runs/quickstart/<timestamp>
    python bench/serve_load.py --train                           # trains the quickstart first
    python bench/serve_load.py --concurrency 1 8 32 64 --duration 10 --modes batched unbatched

For each ingress (``direct``: the replica listens on the port itself, what `rlp serve`
does with one replica; ``proxy``: Serve's HTTP proxy in front of it) and each mode
(``batched``: ``@serve.batch`` with ``--max-batch-size`` / ``--batch-wait-ms``;
``unbatched``: one forward pass per request) it serves the checkpoint
(:func:`rl_platform.serving.app.serve`, one replica, a private local Ray) on a free port
and, for each concurrency level, runs that many closed-loop clients (asyncio + aiohttp,
one connection each) for ``--duration`` seconds after a warm-up, each POSTing
``/v1/act`` with all agents' observations (drawn from the env, pre-encoded). Prints
requests/s, p50/p99 latency and errors per level and writes
bench/results/serve_load.json. Past ``max_ongoing_requests`` + ``max_queued_requests``
clients (256 at the defaults) the server answers 503 + Retry-After: errors "503". The
clients share the machine with the server, so on 2 cores they take CPU from it: the
figures are a floor.

Results to expect (2 cores, quickstart MAPPO policy, 5 agents): see the JSON; the target
is 500 requests/s with p99 < 20 ms and no errors.
"""

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = {
    "name": "serve_bench",
    "env": {"id": "trading", "config": {"num_agents": 5}},
    "algorithm": {"id": "ppo", "shared_policy": True},
}


def fresh_export(root: Path) -> Path:
    """A run directory with an untrained PPO module (64x64, as the quickstart's actor)."""
    from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rl_platform.checkpoints import export_policies
    from rl_platform.config import load_experiment
    from rl_platform.envs.trading import TradingEnv

    resolved = load_experiment(EXPERIMENT)
    env = TradingEnv(dict(resolved.env.config))
    module = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=env.observation_spaces["agent_0"],
        action_space=env.action_spaces["agent_0"],
        model_config={"fcnet_hiddens": [64, 64], "vf_share_layers": False},
        catalog_class=PPOCatalog,
    ).build()
    (root / "config.yaml").write_text(resolved.to_yaml())
    checkpoint = root / "trial" / "checkpoint_000000"
    module.save_to_path(str(checkpoint / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(checkpoint, resolved.model_dump(mode="json"))
    return root


def request_bodies(checkpoint: Path, count: int, seed: int) -> list[bytes]:
    """``count`` /v1/act bodies with every agent's observation from random play."""
    from rl_platform.evaluation.baselines import random_actions
    from rl_platform.evaluation.rollout import make_core
    from rl_platform.serving.app import resolve_arm

    manifest = resolve_arm(checkpoint).manifest
    config = manifest["env"]["config"]
    core = make_core(manifest["env"]["id"], config, config.get("task", "easy"), count)
    rng = np.random.default_rng(seed)
    core.reset(rng)
    for _ in range(5):
        core.step(random_actions(core.action_space, (count, core.num_agents), rng), rng)
    obs = core.observe()
    agents = list(manifest["agents"])
    return [
        json.dumps({"observations": {a: obs[b, i].tolist() for i, a in enumerate(agents)}}).encode()
        for b in range(count)
    ]


async def load_level(
    url: str, bodies: list[bytes], concurrency: int, duration: float, warmup: float
) -> dict:
    """``concurrency`` closed-loop clients for warmup + duration s; stats of the last part."""
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration
    headers = {"content-type": "application/json"}

    async def client(k: int) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            i = k
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                body = bodies[i % len(bodies)]
                i += concurrency
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    status = type(err).__name__
                done = time.perf_counter()
                if sent >= measure_from and done <= stop_at:
                    if status == 200:
                        latencies.append(done - sent)
                    else:
                        errors[str(status)] = errors.get(str(status), 0) + 1

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    ms = np.asarray(latencies) * 1e3
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / duration,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint or run directory")
    parser.add_argument("--train", action="store_true", help="train the quickstart first")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--modes", nargs="+", default=["batched", "unbatched"])
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="no Serve access log"
    )
    parser.add_argument(
        "--ingress", nargs="+", default=["direct", "proxy"], choices=["direct", "proxy"],
        help="direct: the replica listens on the port (rlp serve's default with one "
        "replica); proxy: Serve's HTTP proxy in front of it",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    from rl_platform.serving import app
    from rl_platform.serving.deployment import default_max_ongoing_requests

    scratch = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    checkpoint = args.checkpoint
    if checkpoint is None and args.train:
        import rl_platform

        experiment = ROOT / "experiments" / "quickstart.yaml"
        checkpoint = rl_platform.train(experiment, output=scratch).run_dir
    if checkpoint is None:
        checkpoint = fresh_export(scratch)
    bodies = request_bodies(checkpoint, 256, seed=0)
    load_before = os.getloadavg()
    rows = []
    for ingress in args.ingress:
        for mode in args.modes:
            # Each mode in a fresh private Ray started by serve(), as `rlp serve` does.
            info = app.serve(
                checkpoint,
                port=app.free_port(),
                blocking=False,
                batching=mode == "batched",
                max_batch_size=args.max_batch_size,
                batch_wait_timeout_s=args.batch_wait_ms / 1e3,
                access_log=args.access_log,
                direct_ingress=ingress == "direct",
            )
            try:
                url = info.url + "/v1/act"
                for concurrency in args.concurrency:
                    row = asyncio.run(
                        load_level(url, bodies, concurrency, args.duration, args.warmup)
                    )
                    row.update(mode=mode, ingress=ingress)
                    rows.append(row)
                    print(
                        f"{ingress:>6} {mode:>9}  c={concurrency:<3} "
                        f"{row['requests_per_s']:8.1f} req/s  "
                        f"p50 {row['p50_ms'] or float('nan'):6.2f} ms  "
                        f"p99 {row['p99_ms'] or float('nan'):6.2f} ms  errors {row['errors']}",
                        flush=True,
                    )
            finally:
                app.shutdown()

    print()
    print(
        f"{'ingress':>7} | {'mode':>9} | {'clients':>7} | {'req/s':>8} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | errors"
    )
    for r in rows:
        print(
            f"{r['ingress']:>7} | {r['mode']:>9} | {r['concurrency']:>7} | "
            f"{r['requests_per_s']:8.1f} | "
            f"{r['p50_ms'] or float('nan'):7.2f} | {r['p99_ms'] or float('nan'):7.2f} | "
            f"{r['errors']}"
        )
    result = {
        "checkpoint": str(checkpoint),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "max_batch_size": args.max_batch_size,
            "batch_wait_ms": args.batch_wait_ms,
            "ray_cpus": os.cpu_count(),
            "access_log": args.access_log,
            "replicas": 1,
            # Past these a request gets 503 + Retry-After (counted under errors as "503").
            "max_ongoing_requests": default_max_ongoing_requests(args.max_batch_size),
            "max_queued_requests": default_max_ongoing_requests(args.max_batch_size),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,  # 1, 5, 15 min: other work on the machine
            "load_average_after": os.getloadavg(),
            "python": platform.python_version(),
        },
        "target": {"requests_per_s": 500, "p99_ms": 20, "errors": 0},
        "rows": rows,
    }
    path = args.output / "serve_load.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
