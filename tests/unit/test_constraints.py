"""The tested versions: constraints.txt pins every dependency, and those pins are installed.

The README installs with ``pip install -c constraints.txt -e '.[dev,all]'`` and so does
``.ci/run``; this test proves that what is installed is what the file pins (so a passing
suite vouches for exactly those versions). ``RLP_CONSTRAINTS=none bash .ci/run`` runs the
suite against the newest versions instead, and then the installed-versions check skips.
"""

import os
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SETTING = os.environ.get("RLP_CONSTRAINTS", "constraints.txt")
UPPER = re.compile(r"^(<|<=|==|~=)")


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of the file's pins that apply to this Python."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
        out[canonicalize_name(requirement.name)] = spec.version
    return out


def requirements(dist: str, extras: set[str]) -> list[Requirement]:
    """A distribution's requirements that apply with ``extras`` on this Python."""
    out = []
    for line in metadata.requires(dist) or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(
            marker.evaluate({**default_environment(), "extra": extra}) for extra in {"", *extras}
        ):
            out.append(requirement)
    return out


def runtime_requirements() -> list[Requirement]:
    """rl_platform's own runtime requirements (pyproject.toml's dependencies, no extras)."""
    return requirements("rl_platform", set())


def runtime_extras() -> set[str]:
    """rl_platform's extras but ``dev`` and ``all``."""
    provided = metadata.metadata("rl_platform").get_all("Provides-Extra") or []
    return set(provided) - {"dev", "all"}


def closure(requirements_: list[Requirement]) -> tuple[dict[str, str], list[Requirement]]:
    """``name -> installed version`` of everything `requirements_` pull in, and the missing."""
    versions: dict[str, str] = {}
    missing: list[Requirement] = []
    walked: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements_)
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in walked:
            continue
        walked.add(key)
        try:
            versions[key[0]] = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        todo += requirements(requirement.name, set(requirement.extras))
    return versions, missing


def extra_installed(extra: str) -> bool:
    """Whether everything rl_platform[extra] pulls in is installed."""
    return not closure(requirements("rl_platform", {extra}))[1]


def installed_closure(extras: set[str]) -> dict[str, str]:
    """``name -> installed version`` of everything rl_platform[extras] pulls in."""
    versions, missing = closure(requirements("rl_platform", extras))
    if missing:
        pytest.fail(f"{missing[0]} is required but not installed")
    return versions


def test_constraints_pin_every_runtime_dependency_within_pyprojects_bounds():
    pinned = pins(ROOT / "constraints.txt")
    if not pinned:
        pytest.skip("constraints.txt pins nothing for this Python")
    assert "rl-platform" not in pinned
    assert pinned["torch"] == "2.13.0"  # the README's CPU build
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}"
        )
        assert any(UPPER.match(str(spec)) for spec in requirement.specifier), (
            f"pyproject.toml: {requirement} has no upper bound (below its next major version)"
        )


def test_the_installed_dependencies_are_the_pinned_versions():
    if SETTING == "none":
        pytest.skip("RLP_CONSTRAINTS=none: the suite runs against the newest allowed versions")
    path = Path(SETTING) if Path(SETTING).is_absolute() else ROOT / SETTING
    pinned = pins(path)
    if not pinned:
        pytest.skip(f"{path.name} pins nothing for this Python")
    # The runtime extras are pinned too (.ci/lock installs .[dev,all]); each is checked
    # where installed (`all` is only their union).
    extras = {"dev"} | {extra for extra in runtime_extras() if extra_installed(extra)}
    installed = installed_closure(extras)
    wrong = {
        name: f"{version} installed, " + (f"{pinned[name]} pinned" if name in pinned else "no pin")
        for name, version in sorted(installed.items())
        if name not in pinned or not SpecifierSet(f"=={pinned[name]}").contains(version)
    }
    assert not wrong, (
        f"installed versions differ from {path.name} (reinstall with "
        f"pip install -c {path.name} -e '.[dev,all]', or regenerate it with "
        f"bash .ci/lock): "
        f"{wrong}"
    )
