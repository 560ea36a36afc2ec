"""The tracking section end to end: W&B offline and MLflow on sqlite, read back.

One tiny quickstart run logs to both; what they hold must equal the run directory's
metrics.csv and Tune's progress.csv for the same iterations. No network: W&B runs
offline ($WANDB_MODE) and writes its transaction log under $WANDB_DIR.
"""

import csv
import json
import struct
from pathlib import Path

import pytest
from quickstart_runs import QUICKSTART, TINY

import rl_platform
from rl_platform.tracking import RUN_DIR_TAG

pytest.importorskip("wandb")
pytest.importorskip("mlflow")

RETURN = "env_runners/episode_return_mean"
STEPS = "num_env_steps_sampled_lifetime"
LOSS = "learners/shared/total_loss"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def wandb_records(path: Path):
    """The records of a W&B offline run file (LevelDB log blocks of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    block = 32768
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log: the format changed"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_run(wandb_dir: Path) -> tuple[dict, list[dict], dict]:
    """The offline run's header (name, notes...), history rows and config."""
    (path,) = wandb_dir.glob("wandb/offline-run-*/run-*.wandb")
    run, history, config = {}, [], {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"name": record.run.display_name, "notes": record.run.notes}
            run["project"] = record.run.project
            config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                row[key] = json.loads(item.value_json)
            history.append(row)
    return run, history, config


class SeenIterations:
    """A user's extra Tune callback: remembers the iterations it was shown."""

    def __new__(cls):
        from ray.tune import Callback

        class Recorder(Callback):
            seen: list[int] = []

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.seen.append(result["training_iteration"])

        return Recorder()


@pytest.mark.slow
def test_quickstart_logs_its_metrics_to_wandb_offline_and_mlflow(
    tmp_path, monkeypatch, ray_address
):
    from mlflow.tracking import MlflowClient

    wandb_dir = tmp_path / "wandb"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    items = [
        *TINY,
        "stop.training_iteration=2",
        "tracking.wandb.project=rlp-tests",
        f"tracking.mlflow.tracking_uri={uri}",
    ]
    extra = SeenIterations()
    output = tmp_path / "runs"
    result = rl_platform.train(QUICKSTART, items, output=output, progress=False, callbacks=[extra])
    assert result.status == "finished"
    assert extra.seen == [1, 2]  # the Python API's own callbacks run too
    run_dir = result.run_dir.resolve()
    ours = read_csv(run_dir / "metrics.csv")
    tune_rows = read_csv(run_dir / "trial" / "progress.csv")
    assert [int(r["iteration"]) for r in ours] == [1, 2]
    returns = [float(r["episode_return_mean"]) for r in ours]
    steps = [float(r["env_steps"]) for r in ours]
    losses = [float(r[LOSS]) for r in tune_rows]
    name = f"quickstart/{run_dir.name}/trial"

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert run.info.run_name == name
    assert run.info.status == "FINISHED"
    assert run.data.tags[RUN_DIR_TAG] == str(run_dir)
    assert float(run.data.params["lr"]) == 5.0e-4  # the trial config, flattened
    assert not any(key.startswith("config/") for key in run.data.metrics)
    for key, expected in ((RETURN, returns), (STEPS, steps), (LOSS, losses)):
        history = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in history] == list(zip([1, 2], expected)), key

    header, history, config = wandb_run(wandb_dir)
    assert header["name"] == name
    assert header["project"] == "rlp-tests"
    assert str(run_dir) in header["notes"]
    assert config["lr"] == 5.0e-4
    assert [row["training_iteration"] for row in history] == [1, 2]
    assert [row[RETURN] for row in history] == returns
    assert [row[STEPS] for row in history] == steps
    assert [row[LOSS] for row in history] == losses


def mlflow_runs(uri: str, experiment: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {run.info.run_name: run for run in runs}


@pytest.mark.slow
def test_sweep_and_seed_trials_are_one_mlflow_run_each_named_by_their_folder(
    tmp_path, ray_address, tiny_sweep
):
    from rl_platform.seeds import train_seeds
    from rl_platform.tuning import tune

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep = tiny_sweep(iterations=1, num_samples=2, scheduler="none")
    sweep["tracking"] = {"mlflow": {"tracking_uri": uri}}
    result = tune(sweep, output=tmp_path / "runs", address=ray_address)
    assert result.status == "finished"
    sweep_dir = result.sweep_dir.resolve()
    runs = mlflow_runs(uri, "tiny_sweep")
    assert set(runs) == {f"tiny_sweep/{sweep_dir.name}/trial_{r.trial_id}" for r in result.trials}
    for row in result.trials:
        run = runs[f"tiny_sweep/{sweep_dir.name}/trial_{row.trial_id}"]
        assert run.data.tags[RUN_DIR_TAG] == str(sweep_dir)
        lr = row.params["algorithm.hyperparams.lr"]
        assert float(run.data.params["algorithm.hyperparams.lr"]) == pytest.approx(lr)
        assert run.data.metrics["training_iteration"] == 1

    base = {k: v for k, v in sweep.items() if k != "tune"}
    base["tracking"] = {"mlflow": {"tracking_uri": uri, "experiment_name": "seeds"}}
    group = train_seeds(base, "0,1", output=tmp_path / "runs", address=ray_address, episodes=1)
    group_dir = group.group_dir.resolve()
    runs = mlflow_runs(uri, "seeds")
    assert set(runs) == {f"tiny_sweep/{group_dir.name}/seed_{s}" for s in (0, 1)}
    assert {run.data.tags[RUN_DIR_TAG] for run in runs.values()} == {str(group_dir)}
    assert {run.data.params["seed"] for run in runs.values()} == {"0", "1"}
