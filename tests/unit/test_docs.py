"""The docs site's generated pages and the README front page.

`mkdocs build --strict` (in .ci/run) checks links, anchors and the mkdocstrings blocks;
these tests check what the build cannot: that the generated YAML reference shows every
field of the schema, that the API page follows the façade, and that the README stays a
front page whose links lead somewhere.
"""

import importlib.util
import re
from pathlib import Path

import rl_platform
from rl_platform.config import experiment_json_schema

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "docs" / "hooks"


def hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_yaml_reference_shows_every_field_of_the_schema():
    reference = hook("yaml_reference")
    schema = experiment_json_schema()
    page = reference.render(schema)
    models = [schema, *schema["$defs"].values()]
    for model in models:
        for name in model.get("properties", {}):
            assert f"| `{name}` |" in page, f"{model.get('title')}.{name} is not on the page"
    for section in ("env", "algorithm", "algorithm.network", "rewards.shaping", "tune"):
        assert f"`{section}`" in page
    assert "runs/&lt;name&gt;/" in page  # descriptions' <placeholders> are text, not HTML


def test_the_yaml_reference_shows_defaults_the_schema_leaves_out():
    from rl_platform.config import ExperimentConfig

    reference = hook("yaml_reference")
    defaults = reference.factory_defaults(ExperimentConfig)
    page = reference.render(experiment_json_schema(), defaults)
    assert '| `stop` | object ([section](#stop)) | `{"training_iteration": 50}` |' in page


def test_the_api_page_documents_every_public_name_where_it_is_defined():
    api = hook("api_reference")
    names = api.public_names((ROOT / "rl_platform" / "__init__.py").read_text())
    public = {n for n in rl_platform.__all__ if not n.startswith("_")}
    assert set(names) == public
    for name, path in names.items():
        module, _, attribute = path.rpartition(".")
        assert attribute == name
        source = ROOT / module.replace(".", "/")
        assert source.with_suffix(".py").is_file() or (source / "__init__.py").is_file(), path


def test_the_readme_is_a_front_page_whose_links_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert links
    for link in links:
        if "://" not in link:
            assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_the_yaml_reference_gives_each_variant_of_a_union_its_own_sections():
    from typing import Annotated, Literal

    from pydantic import BaseModel, Field

    class PPOHyperparams(BaseModel):
        lr: float = Field(default=5e-4, description="Learning rate.")

    class QMIXHyperparams(BaseModel):
        mixing_embed_dim: int = 32

    class PPO(BaseModel):
        id: Literal["ppo"]
        hyperparams: PPOHyperparams = PPOHyperparams()

    class QMIX(BaseModel):
        id: Literal["qmix"]
        hyperparams: QMIXHyperparams = QMIXHyperparams()

    class Experiment(BaseModel):
        algorithm: Annotated[PPO | QMIX, Field(discriminator="id")]

    page = hook("yaml_reference").render(Experiment.model_json_schema())
    assert "## `algorithm` {#algorithm}" in page  # links to `#algorithm` keep working
    assert "### `algorithm.hyperparams` (id: ppo) {#algorithm-hyperparams-id-ppo}" in page
    assert "### `algorithm.hyperparams` (id: qmix) {#algorithm-hyperparams-id-qmix}" in page
    assert "| `lr` | number | `0.0005` | Learning rate. |" in page
    assert "| `mixing_embed_dim` |" in page


def test_the_set_up_commands_are_the_same_in_the_readme_and_the_docs():
    commands = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("python3 -m venv")
    ]
    assert len(commands) == 2  # install + quickstart, install + tests
    guide = (ROOT / "docs" / "getting-started.md").read_text().splitlines()
    for command in commands:
        assert command in guide, f"docs/getting-started.md lacks the README's {command!r}"
