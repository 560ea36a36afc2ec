"""The installed environment is consistent, and the extras are what the docs say.

CI installs ``pip install -c constraints.txt -e '.[dev,all]'`` (the README's set-up) in a
fresh virtualenv and runs these: ``pip check`` is clean, no two distributions write the
same top-level module (pygame and pygame-ce both write ``pygame/``: one silently
overwrites the other, and ``pip check`` does not notice), ``tensorboard --logdir runs``
works, and ``[dev]`` holds test tools only while ``[all]`` holds every runtime extra.
"""

import ast
import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_EXTRAS = {"serve", "mpe", "vmas", "export", "tensorboard", "tracking"}
# Top-level packages several distributions may share, besides PEP 420 namespace packages
# (found below), each with the reason; the test checks that reason still holds.
PKGUTIL_NAMESPACES = {
    # opencensus-context ships the same opencensus/__init__.py as opencensus: a
    # pkgutil-style namespace (`__path__ = pkgutil.extend_path(...)`), identical files.
    "opencensus": {"opencensus", "opencensus-context"},
}


def shared_top_levels() -> dict[str, set[str]]:
    """Top-level import names that more than one installed distribution provides."""
    out = {}
    for top, dists in metadata.packages_distributions().items():
        names = {canonicalize_name(d) for d in dists}
        if len(names) > 1:
            out[top] = names
    return out


def is_pep420_namespace(top: str) -> bool:
    """True if `top` is a namespace package: directories without an ``__init__.py``."""
    spec = importlib.util.find_spec(top) if top.isidentifier() else None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return bool(locations) and not any((Path(p) / "__init__.py").exists() for p in locations)


def recorded_hashes(dist: str, top: str) -> dict[str, str]:
    """``path -> hash`` of the files under `top`/ that `dist`'s RECORD lists."""
    files = metadata.distribution(dist).files or []
    return {
        str(f): f.hash.value
        for f in files
        if f.parts and f.parts[0] == top and f.hash is not None and f.suffix == ".py"
    }


def test_pip_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_top_level_module_comes_from_one_distribution():
    conflicts = {}
    for top, dists in sorted(shared_top_levels().items()):
        if is_pep420_namespace(top):
            continue  # e.g. google, opentelemetry: each distribution adds its own subpackages
        if top in PKGUTIL_NAMESPACES and dists <= PKGUTIL_NAMESPACES[top]:
            # Exempt only while every file they both write is byte-identical.
            hashes = [recorded_hashes(d, top) for d in dists]
            common = set.intersection(*(set(h) for h in hashes))
            differ = sorted(p for p in common if len({h[p] for h in hashes}) > 1)
            assert not differ, f"{sorted(dists)} write different {differ}"
            continue
        conflicts[top] = sorted(dists)
    assert not conflicts, (
        f"top-level modules written by several distributions (one overwrites the other): "
        f"{conflicts}"
    )


def test_the_namespace_check_sees_a_real_namespace_package():
    # The exemption above must not swallow ordinary packages.
    assert not is_pep420_namespace("pytest")
    assert not is_pep420_namespace("rl_platform")
    shared = shared_top_levels()
    if "google" in shared:  # protobuf and google-auth (through Ray) share google/
        assert is_pep420_namespace("google")


def test_tensorboard_version_runs():
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("the tensorboard extra is not installed")
    script = Path(sys.executable).parent / "tensorboard"
    assert script.exists(), f"no tensorboard script beside {sys.executable}"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == metadata.version("tensorboard")


def extra_requirements(extra: str) -> list[Requirement]:
    """rl_platform's installed requirements that only `extra` brings in."""
    out = []
    for line in metadata.requires("rl_platform") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is not None and marker.evaluate({**default_environment(), "extra": extra}):
            if not marker.evaluate({**default_environment(), "extra": ""}):
                out.append(requirement)
    return out


def test_extras_are_the_documented_ones():
    provided = set(metadata.metadata("rl_platform").get_all("Provides-Extra") or [])
    assert provided == RUNTIME_EXTRAS | {"dev", "all"}
    (everything,) = extra_requirements("all")
    assert canonicalize_name(everything.name) == "rl-platform"
    assert set(everything.extras) == RUNTIME_EXTRAS
    page = (ROOT / "docs" / "getting-started.md").read_text()
    table = page.split("### Extras", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z]+)` \|", table, re.M))
    assert documented == provided, "docs/getting-started.md's extras table"
    for name in ("README.md", "docs/getting-started.md", ".ci/run"):
        assert "-e '.[dev,all]'" in (ROOT / name).read_text(), name


def test_dev_holds_no_runtime_package():
    dev = {canonicalize_name(r.name) for r in extra_requirements("dev")}
    core = {
        canonicalize_name(r.name)
        for r in map(Requirement, metadata.requires("rl_platform") or [])
        if r.marker is None or r.marker.evaluate({**default_environment(), "extra": ""})
    }
    extras = {canonicalize_name(r.name) for e in RUNTIME_EXTRAS for r in extra_requirements(e)}
    assert dev and not dev & (core | extras | {"pygame", "pygame-ce"})
    # rl_platform's own code imports nothing only [dev] installs.
    providers = metadata.packages_distributions()
    imported = set()
    for path in (ROOT / "rl_platform").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    from_dev = {
        top: sorted(dists)
        for top in imported
        if (dists := {canonicalize_name(d) for d in providers.get(top, [])}) and dists <= dev
    }
    assert not from_dev, f"rl_platform imports packages only [dev] installs: {from_dev}"


def hide(monkeypatch, package: str, forget: str = "") -> None:
    """Make `package` unimportable; forget the loaded modules under `forget` that import it."""
    for name in list(sys.modules):
        if name.partition(".")[0] == package or (forget and name.startswith(forget)):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def test_an_mpe2_env_without_the_mpe_extra_says_how_to_install_it(cli, monkeypatch):
    hide(monkeypatch, "mpe2")
    result = cli("envs", "check", "pettingzoo:mpe2.simple_spread_v3:parallel_env")
    assert result.exit_code == 2, result.output
    assert "pip install -e '.[mpe]'" in result.stderr
    assert "Traceback" not in result.output


def test_rlp_serve_without_the_serve_extra_says_how_to_install_it(cli, monkeypatch, tmp_path):
    hide(monkeypatch, "fastapi", forget="rl_platform.serving.")
    result = cli("serve", tmp_path)
    assert result.exit_code == 2, result.output
    assert "pip install -e '.[serve]'" in result.stderr and "fastapi" in result.stderr
    assert "Traceback" not in result.output


def test_onnx_export_without_the_export_extra_says_how_to_install_it(monkeypatch):
    from rl_platform.serving import portable

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(portable.PortableExportError, match=re.escape("pip install -e '.[export]'")):
        portable._check_dependencies("onnx")
