"""``rlp evaluate`` and ``rlp finetune``: score a policy export, fine-tune it from feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rl_platform.cli.output import console, fail


def evaluate(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="A checkpoint, or a run directory (its best checkpoint); a path or a "
            "storage URI (s3://..., gs://..., file://...)."
        ),
    ],
    episodes: Annotated[int, typer.Option(help="Episodes per policy, level and test.")] = 100,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Report directory; default RUN_DIR/evaluation/<checkpoint> "
            "(for a URI: ./evaluation/<run or checkpoint name>)."
        ),
    ] = None,
    baselines: Annotated[
        bool, typer.Option(help="Run every test for the baselines too (else scores only).")
    ] = True,
    seed: Annotated[int, typer.Option(help="Evaluation seed: same seed, same figures.")] = 0,
    obs_noise: Annotated[
        float, typer.Option(help="Observation noise std, in units of each feature's std.")
    ] = 0.2,
    action_noise: Annotated[
        float, typer.Option(help="Probability an action is replaced by a random one.")
    ] = 0.1,
    workers: Annotated[
        int | None,
        typer.Option(help="0: play in this process; default: Ray tasks on a local Ray."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (the policies travel to it as data)."),
    ] = None,
    shield: Annotated[
        bool, typer.Option(help="Pass every action through the run's safety shield.")
    ] = False,
) -> None:
    """Score a checkpoint next to its env's baselines and random play, like for like.

    Every policy and baseline gets the same dimensions and one overall with the same
    weights; sample efficiency (the greedy scores of the run's kept checkpoints) is
    reported apart. Writes evaluation.json (every figure), report.md, report.html and
    plots/*.png. Only the weights-only policy export is loaded, as data (no pickle); a run
    directory is read only inside itself. From a storage URI only the run's files and its
    policy exports are downloaded, to a temp dir removed at the end.

    [bold]Examples[/]

      rlp evaluate runs/quickstart/20261125-101500 --episodes 50

      rlp evaluate runs/quickstart/20261125-101500/trial/checkpoint_000004 --report out/

      rlp evaluate s3://bucket/runs/quickstart/20261125-101500 --address auto
    """
    from rl_platform.checkpoints import PolicyExportError
    from rl_platform.evaluation.suite import EvaluationError, SuiteSettings
    from rl_platform.evaluation.suite import evaluate as run_evaluation
    from rl_platform.storage import StorageError, fetched, is_uri, remote_name

    if episodes < 1:
        fail(f"--episodes must be at least 1, got {episodes}.")
    if not 0.0 <= action_noise <= 1.0:
        fail(f"--action-noise is a probability in [0, 1], got {action_noise}.")
    if obs_noise < 0.0:
        fail(f"--obs-noise must be >= 0, got {obs_noise}.")
    settings = SuiteSettings(
        episodes=episodes,
        seed=seed,
        obs_noise=obs_noise,
        action_noise=action_noise,
        baselines=baselines,
        shield=shield,
    )
    if report is None and is_uri(checkpoint):  # not into the temp copy
        report = Path("evaluation") / remote_name(checkpoint)
    try:
        with console.status("evaluating ..."), fetched(checkpoint) as local:
            outcome = run_evaluation(
                local, settings, report=report, workers=workers, address=address
            )
    except (EvaluationError, PolicyExportError, StorageError) as err:
        fail(str(err))
    print_evaluation(outcome)


def print_evaluation(outcome) -> None:
    """Print an evaluation's scores and dimensions per policy, and where its report is."""
    from rl_platform.evaluation.report import fmt
    from rl_platform.evaluation.result_data import DIMENSIONS

    result = outcome.result
    policies = result["policies"]
    table = Table(title=f"{result['env']['id']} / {result['algorithm']} at {result['level']}")
    table.add_column("", no_wrap=True)
    for policy in policies:
        table.add_column(policy, justify="right")
    table.add_row("score", *(fmt(result["scores"][p]["mean"]) for p in policies))
    table.add_row("normalized", *(fmt(result["scores"][p]["normalized"]) for p in policies))
    table.add_row("vs random", *(fmt(result["scores"][p].get("vs_random")) for p in policies))
    for dim in [*(DIMENSIONS if result["weights"] else ()), "overall"]:
        values = (fmt(result["dimensions"][p].get(dim)) for p in policies)
        label = "overall (same weights)" if dim == "overall" else dim
        table.add_row(label.replace("_", " "), *values, end_section=dim == "adaptability")
    console.print(table)
    efficiency = result.get("sample_efficiency")
    if isinstance(efficiency, dict) and "auc" in efficiency:
        console.print(
            f"sample efficiency (not in overall): greedy-curve AUC {fmt(efficiency['auc'])}, "
            f"env steps to 90% of the last checkpoint's score "
            f"{fmt(efficiency.get('steps_to_90pct_final'))}",
            highlight=False,
        )
    elif isinstance(efficiency, dict) and efficiency.get("unavailable"):
        console.print(f"sample efficiency: n/a: {efficiency['unavailable']}", highlight=False)
    for name, reason in result.get("not_applicable", {}).items():
        console.print(f"n/a on this env: {name.replace('_', ' ')}: {reason}", highlight=False)
    for name, games in result["details"].get("versus_random", {}).items():
        console.print(
            f"{name} against random play: win {games['win']:.1%}, draw {games['draw']:.1%}, "
            f"loss {games['loss']:.1%} over {games['games']} games; "
            f"{games['illegal_moves']} illegal moves",
            highlight=False,
        )
    safety = result["details"].get("safety", {})
    if "policy" in safety:
        own = safety["policy"]
        line = f"safety: the policy breaks a constraint in {own['violation_rate']['any']:.2%}"
        line += " of agent-steps"
        if "intervention_rate" in own:
            line += f"; the shield replaced {own['intervention_rate']:.2%}"
        console.print(line, highlight=False)
    console.print(f"report: {outcome.files.get('html', outcome.report_dir)}", highlight=False)
    console.print(f"figures: {outcome.files['json']}", highlight=False)


def finetune(
    checkpoint: Annotated[Path, typer.Argument(help="The served checkpoint (or run dir).")],
    store: Annotated[Path, typer.Option(help="The serving feedback store (feedback.sqlite).")],
    output: Annotated[Path, typer.Option(help="New export folder (gets policies/).")],
    arm: Annotated[
        str | None, typer.Option(help="Only this arm's transitions (champion, challenger).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the transitions.")] = 20,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="AWR temperature (reward stds).")] = 1.0,
    min_transitions: Annotated[int, typer.Option(help="Refuse below this many.")] = 50,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune a policy offline from served feedback (advantage-weighted regression).

    The result is a weights-only export that `rlp serve` loads: roll it out as the
    challenger (--challenger OUTPUT) and let the A/B report judge it. The source export
    is loaded as data (no pickle); a run directory is read only inside itself.

    [bold]Example[/]

      rlp finetune runs/quickstart/20261127-115537 --store feedback.sqlite --output finetuned/
    """
    from rl_platform.evaluation.suite import EvaluationError, resolve_target
    from rl_platform.serving.finetune import finetune_from_store

    try:
        source = resolve_target(checkpoint).checkpoint
        result = finetune_from_store(
            source,
            store,
            output,
            arm=arm,
            epochs=epochs,
            lr=lr,
            temperature=temperature,
            min_transitions=min_transitions,
            seed=seed,
        )
    except (EvaluationError, ValueError, FileNotFoundError, FileExistsError) as err:
        fail(str(err))
    console.print(
        f"fine-tuned {source} on {result.transitions} transitions: loss "
        f"{result.loss_before:.4f} -> {result.loss_after:.4f}; export in {result.out}",
        highlight=False,
    )
