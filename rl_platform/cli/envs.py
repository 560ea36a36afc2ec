"""``rlp envs list`` and ``rlp envs check``: the registered envs and their conformance."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from rl_platform import registry
from rl_platform.cli.options import TrustModuleOption, use_trusted_modules
from rl_platform.cli.output import EXIT_FAILED, console, fail
from rl_platform.config import ConfigError, apply_overrides, format_validation_error
from rl_platform.trust import UntrustedModuleError

envs_app = typer.Typer(help="List the registered envs and check them.", no_args_is_help=True)


@envs_app.command("list")
def envs_list() -> None:
    """List registered env and algorithm ids.

    [bold]Example[/]

      rlp envs list
    """
    table = Table(title="envs")
    table.add_column("id", style="bold")
    table.add_column("description")
    for entry in registry.ENVS.values():
        table.add_row(entry.id, entry.description)
    for short, source in registry.PETTINGZOO_SHORT_IDS.items():
        table.add_row(short, f"a PettingZoo env shipped with the platform ({source})")
    table.add_row(
        f"{registry.PETTINGZOO_PREFIX}<module>:<factory>",
        "a PettingZoo env from pettingzoo.*, mpe2.*, vmas.* (factory env, parallel_env or "
        "raw_env) or a --trust-module, e.g. pettingzoo:mpe2.simple_spread_v3:parallel_env",
    )
    table.add_row(
        f"{registry.VMAS_PREFIX}<scenario>",
        "a VMAS scenario as a batched core (pip install -e '.\\[vmas]'), e.g. vmas:navigation, "
        "vmas:balance, vmas:simple_spread; env.config keys go to vmas.make_env",
    )
    console.print(table)
    algos = Table(title="algorithms")
    algos.add_column("id", style="bold")
    algos.add_column("description")
    for entry in registry.ALGORITHMS.values():
        algos.add_row(entry.id, entry.description)
    console.print(algos)


@envs_app.command("check")
def envs_check(
    env_id: Annotated[str, typer.Argument(help="A registered env id.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Env config: key=value.")
    ] = None,
    trust_module: TrustModuleOption = None,
) -> None:
    """Run the RLlib and PettingZoo conformance checks on an env.

    Prints each check as pass, FAIL or skip (with the reason it does not apply); a
    PettingZoo env gets PettingZoo's own api_test / parallel_api_test and seed tests.

    [bold]Examples[/]

      rlp envs check rendezvous

      rlp envs check rendezvous --set discrete=true --set num_agents=5

      rlp envs check pettingzoo:pettingzoo.classic.rps_v2:env

      rlp envs check pettingzoo:my_envs.grid:parallel_env --trust-module my_envs
    """
    use_trusted_modules(trust_module)
    try:
        entry = registry.get_env(env_id)
    except UntrustedModuleError as err:
        fail(f"env id {err}.")
    if entry is None:
        fail(
            f"unknown env {env_id!r}; expected one of: {', '.join(registry.env_ids())}, "
            "pettingzoo:<module>:<factory> or vmas:<scenario>."
        )
    config: dict = {}
    try:
        config = apply_overrides({}, set_ or [], "--set")
        env_cls = entry.load()
        env_cls.config_model.model_validate({**config, **entry.bound_config})
    except ConfigError as err:
        fail(str(err))
    except ValidationError as err:
        fail(format_validation_error(f"env {env_id!r}", err, env_cls.config_model, what="config"))
    except ValueError as err:  # the env cannot be loaded
        fail(f"env {env_id!r}: invalid config {config}: {err}")
    if hasattr(env_cls, "probe_config"):  # foreign envs: their factory judges the config
        try:
            env_cls.probe_config({**config, **entry.bound_config})
        except Exception as err:  # noqa: BLE001 (any failure to build is a config error)
            fail(
                f"env {env_id!r} cannot be built with --set {config!r}: {type(err).__name__}: {err}"
            )
    from rl_platform.envs.checks import check_env, view_steps_per_second

    results = check_env(env_id, config)
    for result in results:
        if result.skipped:
            mark = "[yellow]skip[/]"
        else:
            mark = "[green]pass[/]" if result.passed else "[red]FAIL[/]"
        detail = escape(result.detail)
        console.print(f"{mark}  {escape(result.name)}  {detail}", highlight=False)
    if not all(r.passed for r in results):
        raise typer.Exit(EXIT_FAILED)
    rate = view_steps_per_second(env_id, config, seconds=1.0)
    console.print(f"throughput: {rate:,.0f} env steps/s (RLlib view, one copy, random actions)")
