"""What the platform trusts: modules an experiment may name, and pickled state it may load.

Both rules are checked before anything is imported or unpickled: an env id
``pettingzoo:<module>:<factory>`` may name only the PettingZoo family, ``mpe2``, ``vmas``
(factories in :data:`FAMILY_FACTORIES`) or modules trusted outside the YAML, else
:class:`UntrustedModuleError`; :func:`check_own_state` refuses to unpickle a directory this
user did not write unless ``trust=True``. Torch- and Ray-free. The rules: docs/security.md.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

TRUSTED_MODULES_ENV = "RLP_TRUSTED_MODULES"
"""Environment variable: comma-separated module prefixes the user trusts."""

ENV_FAMILIES: tuple[str, ...] = ("pettingzoo", "mpe2", "vmas", "rl_platform.envs")
"""Packages whose modules an env id may always name (with their factories only)."""

FAMILY_FACTORIES: tuple[str, ...] = ("env", "parallel_env", "raw_env")
"""The factory names a module of :data:`ENV_FAMILIES` may be called through."""


class UntrustedModuleError(ValueError):
    """A file names a module (or a callable in it) outside the allow-list.

    ``reason`` is the message without the offending name (for messages that show it).
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name!r}: {reason}")
        self.name = name
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in Ray workers, pickled
        return type(self), (self.name, self.reason)


class UntrustedStateError(ValueError):
    """Pickled state in a directory this user did not write (or others can write)."""


# --------------------------------------------------------------------------- modules


def trusted_modules() -> tuple[str, ...]:
    """The module prefixes the user trusts: ``$RLP_TRUSTED_MODULES``, in order."""
    text = os.environ.get(TRUSTED_MODULES_ENV, "")
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def trust_modules(names: Iterable[str]) -> tuple[str, ...]:
    """Trust module prefixes in this process and the Ray workers it starts.

    Adds `names` to ``$RLP_TRUSTED_MODULES`` (a private Ray started afterwards, and a
    submitted job, inherit it) and returns the whole trusted list.

    Raises:
        UntrustedModuleError: a name is not a dotted Python module name.
    """
    names = [n.strip() for n in names]
    for name in names:
        if not _is_module_name(name):
            raise UntrustedModuleError(
                name,
                "--trust-module: not a Python module name (expected dotted identifiers, "
                "e.g. my_envs or my_pkg.envs)",
            )
    merged = tuple(dict.fromkeys([*trusted_modules(), *names]))
    if merged:
        os.environ[TRUSTED_MODULES_ENV] = ",".join(merged)
    return merged


def worker_env_vars() -> dict[str, str]:
    """The variables that carry the trusted modules to Ray workers (a ``runtime_env``).

    A private Ray started by this process inherits them; a cluster's workers (``ray.init``
    with an address, a submitted job) get them only through ``runtime_env["env_vars"]``.
    """
    modules = trusted_modules()
    return {TRUSTED_MODULES_ENV: ",".join(modules)} if modules else {}


def check_env_factory(source: str, prefix: str = "pettingzoo:") -> tuple[str, str]:
    """The (module, factory) an env id such as ``pettingzoo:mpe2.simple_spread_v3:env`` names.

    Only a string check: nothing is imported.

    Raises:
        UntrustedModuleError: `source` is malformed, or names a module outside the
            allow-list, or a factory its family does not offer.
    """
    body = source.removeprefix(prefix)
    module, sep, factory = body.partition(":")
    if not source.startswith(prefix) or not sep or not _is_module_name(module):
        raise UntrustedModuleError(
            source,
            f"not of the form {prefix}<module>:<factory>, e.g. "
            f"{prefix}mpe2.simple_spread_v3:parallel_env",
        )
    if not factory.isidentifier():
        raise UntrustedModuleError(
            source,
            f"the factory {factory!r} must be a plain name in the module (no attribute "
            f"paths), e.g. {', '.join(FAMILY_FACTORIES)}",
        )
    if _within(module, trusted_modules()):
        return module, factory
    if _within(module, ENV_FAMILIES):
        if factory not in FAMILY_FACTORIES:
            raise UntrustedModuleError(
                source,
                f"{module.split('.')[0]} envs are built by one of "
                f"{', '.join(FAMILY_FACTORIES)}, not {factory!r}",
            )
        return module, factory
    raise UntrustedModuleError(
        source,
        f"module {module!r} is not allowed; an env id may name modules of "
        f"{', '.join(f'{f}.*' for f in ENV_FAMILIES)} (factories "
        f"{', '.join(FAMILY_FACTORIES)}) or modules you trust outside the YAML "
        f"({describe_trusted()}); nothing was imported",
    )


def check_env_class(env_id: str) -> tuple[str, str]:
    """The (module, class) an env id ``<module>:<Class>`` names, if the module is trusted.

    For an RLlib ``MultiAgentEnv`` subclass of the user's own (docs/custom-envs.md, "Bring
    your own MultiAgentEnv"). Only a string check: nothing is imported; the class is
    checked to be a ``MultiAgentEnv`` subclass once imported
    (:func:`rl_platform.envs.custom.load_env_class`).

    Raises:
        UntrustedModuleError: `env_id` is malformed or its module is not trusted
            (``$RLP_TRUSTED_MODULES`` or ``--trust-module``).
    """
    module, sep, name = env_id.partition(":")
    if not sep or not _is_module_name(module) or not name.isidentifier():
        raise UntrustedModuleError(
            env_id,
            "not of the form <module>:<Class> (an RLlib MultiAgentEnv subclass in a module "
            "you trust, e.g. my_envs:GatherEnv)",
        )
    if not _within(module, trusted_modules()):
        raise UntrustedModuleError(
            env_id,
            f"module {module!r} is not trusted, so it was not imported: an env id "
            "<module>:<Class> may name only modules you trust outside the YAML "
            f"({describe_trusted()})",
        )
    return module, name


def describe_trusted() -> str:
    """How the user trusts a module, and what is trusted now (for error messages)."""
    now = ", ".join(trusted_modules()) or "none"
    return f"${TRUSTED_MODULES_ENV}=a,b or --trust-module NAME; trusted now: {now}"


def _is_module_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# --------------------------------------------------------------------------- pickled state

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def check_own_state(directory: str | Path, *, trust: bool = False) -> None:
    """Refuse to load pickled state from `directory` unless this user alone could write it.

    The directory, everything in it (followed through symlinks) and every parent must
    pass: the directory and its contents are owned by this user and writable by no one
    else (group write is allowed for the user's private group); a parent is owned by this
    user or root and, unless it has the sticky bit (as ``/tmp``), writable by no one else.
    Without these, someone else could have put a pickle there that runs their code.

    Args:
        directory: a run, sweep or checkpoint directory about to be unpickled.
        trust: skip the check (``--trust``): the caller vouches for whoever can write it.

    Raises:
        UntrustedStateError: the directory fails the check (the message names the path,
            its owner or mode, and ``--trust``).
    """
    if trust or not hasattr(os, "getuid"):
        return
    root = Path(directory).resolve()
    if not root.exists():
        return  # the caller reports a missing directory in its own words
    problem = _parent_problem(root) or _tree_problem(root)
    if problem:
        raise UntrustedStateError(
            f"{directory}: refusing to load its pickled state: {problem}. Resuming and "
            "loading whole algorithms unpickle what the directory holds, which runs code "
            "of whoever wrote it, so only your own directories are loaded. Fix the owner or "
            "permissions (chmod go-w), or pass --trust (trust=True) if you trust everyone "
            "who can write there."
        )


def _parent_problem(root: Path) -> str | None:
    uid = os.getuid()
    for parent in root.parents:
        info = parent.stat()
        if info.st_uid not in (uid, 0):
            return f"its parent {parent} belongs to uid {info.st_uid}, not to you (uid {uid})"
        if info.st_mode & stat.S_ISVTX:
            continue
        if _writable_by_others(info):
            return f"its parent {parent} is writable by others (mode {_mode(info)})"
    return None


def _tree_problem(root: Path) -> str | None:
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in seen:
            dirs.clear()  # a symlink loop: already checked
            continue
        seen.add((info.st_dev, info.st_ino))
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            try:
                info = os.stat(path)
            except FileNotFoundError:  # a dangling symlink: nothing to load
                continue
            problem = _path_problem(Path(path), info)
            if problem:
                return problem
    return None


def _path_problem(path: Path, info: os.stat_result) -> str | None:
    uid = os.getuid()
    if info.st_uid != uid:
        return f"{path} belongs to uid {info.st_uid}, not to you (uid {uid})"
    if _writable_by_others(info):
        return f"{path} is writable by others (mode {_mode(info)})"
    return None


def _writable_by_others(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _private_group(info.st_gid, os.getuid())


@lru_cache(maxsize=8)
def _private_group(gid: int, uid: int) -> bool:
    """Whether `gid` is `uid`'s own group (a user private group): no one else is in it."""
    try:
        import grp
        import pwd

        me = pwd.getpwuid(uid)
        group = grp.getgrgid(gid)
        others = [p.pw_name for p in pwd.getpwall() if p.pw_gid == gid and p.pw_uid != uid]
    except (ImportError, KeyError):
        return False
    return me.pw_gid == gid and not others and all(m == me.pw_name for m in group.gr_mem)


def _mode(info: os.stat_result) -> str:
    return stat.filemode(info.st_mode)
