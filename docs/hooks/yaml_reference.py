"""MkDocs hook: the YAML reference page, generated from the experiment's JSON Schema.

``docs/reference/yaml.md`` holds a marker line; at build time this hook replaces it with
one table per section of the experiment YAML (every field's type, default and
description), rendered from ``rl_platform.config.experiment_json_schema()``. The page
cannot drift from the models: change a field and the next build shows it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MARKER = "<!-- yaml-reference -->"
PAGE = "reference/yaml.md"
_CODE_SPAN = re.compile(r"(`+).+?\1")
_ROLE = re.compile(r":[a-z]+:`")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker on the YAML reference page with the rendered schema."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker line {MARKER!r}")
    from rl_platform import config as experiment

    defaults = factory_defaults(getattr(experiment, "ExperimentConfig", None))
    return markdown.replace(MARKER, render(experiment.experiment_json_schema(), defaults))


def render(schema: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """Markdown for the whole schema: the top-level fields, then one table per section.

    ``defaults`` maps a dotted field path to a default the schema cannot show (pydantic
    leaves ``default_factory`` values out of the schema).
    """
    renderer = _Renderer(schema, defaults or {})
    return renderer.run()


def factory_defaults(model: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> JSON value of every ``default_factory`` field of a pydantic model."""
    out: dict[str, Any] = {}
    for name, field in getattr(model, "model_fields", {}).items():
        path = f"{prefix}{name}"
        if field.default_factory is not None:
            try:
                value = field.default_factory()
            except TypeError:  # a factory that takes the validated data
                value = None
            if hasattr(value, "model_dump"):
                value = value.model_dump(mode="json", exclude_defaults=True)
            if value is not None:
                out[path] = value
        annotation = field.annotation
        for inner in (annotation, *getattr(annotation, "__args__", ())):
            if hasattr(inner, "model_fields"):
                out.update(factory_defaults(inner, path + "."))
    return out


class _Renderer:
    def __init__(self, schema: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.schema = schema
        self.defaults = defaults
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.sections: list[str] = []
        self.done: set[tuple[str, str | None]] = set()

    def run(self) -> str:
        top = self._table(self.schema, "")
        return "\n\n".join(["## Top level", top, *self.sections]) + "\n"

    # ------------------------------------------------------------------ sections

    def _table(self, model: dict[str, Any], path: str, scope: str | None = None) -> str:
        """A field table for one object model, queueing a section for each nested model.

        ``scope`` is the union variant the model belongs to (``id: ppo``): sections
        nested in a variant are that variant's own, so their titles and anchors carry it.
        """
        required = set(model.get("required", []))
        rows = ["| field | type | default | description |", "|---|---|---|---|"]
        nested: list[tuple[str, dict[str, Any], str | None]] = []
        for name, field in model.get("properties", {}).items():
            dotted = f"{path}.{name}" if path else name
            variants = [(label or scope, variant) for label, variant in self._models_in(field)]
            nested += [(dotted, variant, label) for label, variant in variants]
            kind = self._type(field, dotted, variants)
            default = "**required**" if name in required else self._default(field, dotted, variants)
            rows.append(f"| `{name}` | {kind} | {default} | {_cell(self._description(field))} |")
        if model.get("additionalProperties") is False:
            note = "Other keys are refused."
        else:
            note = ""
        for dotted, variant, label in nested:
            labels = [lab for d, _, lab in nested if d == dotted]
            if len(labels) > 1 and (dotted, scope) not in self.done:
                self._union_header(dotted, scope, labels)
            self._section(dotted, variant, label)
        return "\n".join(rows) + ("\n\n" + note if note else "")

    def _union_header(self, path: str, scope: str | None, labels: list[str | None]) -> None:
        """A section for a field that holds one of several models, linking each variant."""
        self.done.add((path, scope))
        depth = min(2 + path.count("."), 4)
        title = f"`{path}`" + (f" ({scope})" if scope else "")
        links = ", ".join(f"[{label}](#{_anchor(path, label)})" for label in labels)
        self.sections.append(
            f"{'#' * depth} {title} {{#{_anchor(path, scope)}}}\n\nOne of: {links}."
        )

    def _section(self, path: str, model: dict[str, Any], label: str | None) -> None:
        if (path, label) in self.done:
            return
        self.done.add((path, label))
        depth = min(2 + path.count("."), 4)
        title = f"`{path}`" + (f" ({label})" if label else "")
        # Reserve the slot first so a section comes before the sections nested in it.
        slot = len(self.sections)
        self.sections.append("")
        parts = [f"{'#' * depth} {title} {{#{_anchor(path, label)}}}"]
        if model.get("description"):
            paragraphs = model["description"].split("\n\n")
            parts += [_text(" ".join(p.split())) for p in paragraphs]
        parts.append(self._table(model, path, label))
        self.sections[slot] = "\n\n".join(parts)

    # ------------------------------------------------------------------ schema reading

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if ref and ref.startswith("#/$defs/"):
            return self.defs[ref.split("/")[-1]]
        return node

    def _is_model(self, node: dict[str, Any]) -> bool:
        node = self._resolve(node)
        return node.get("type", "object") == "object" and "properties" in node

    def _models_in(self, field: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
        """The object models a field holds: one, or one per variant of a union."""
        options = [field]
        for key in ("anyOf", "oneOf"):
            if key in field:
                options = field[key]
        models = [self._resolve(o) for o in options if self._is_model(o)]
        models += [
            self._resolve(o["items"])
            for o in options
            if o.get("type") == "array" and self._is_model(o.get("items", {}))
        ]
        if len(models) == 1:
            return [(None, models[0])]
        return [(self._variant_label(field, m, i), m) for i, m in enumerate(models)]

    def _variant_label(self, field: dict[str, Any], model: dict[str, Any], index: int) -> str:
        discriminator = field.get("discriminator", {})
        prop = discriminator.get("propertyName")
        for name in [prop] if prop else list(model.get("properties", {})):
            tag = model.get("properties", {}).get(name, {})
            value = tag.get("const", (tag.get("enum") or [None])[0] if "enum" in tag else None)
            if value is not None and (prop or len(tag.get("enum", [value])) == 1):
                return f"{name}: {value}"
        return model.get("title", f"variant {index + 1}")

    def _description(self, field: dict[str, Any]) -> str:
        text = field.get("description")
        if not text and len(self._models_in(field)) > 1:
            text = "One of the variants below, chosen by its tag."
        if not text:
            for option in field.get("anyOf", []) + field.get("oneOf", []) + [field]:
                text = self._resolve(option).get("description")
                if text and self._is_model(option):
                    text = text.split("\n\n")[0]
                if text:
                    break
        return " ".join((text or "").split())

    def _default(self, field: dict[str, Any], path: str, variants: list[Any]) -> str:
        if "default" in field:
            return f"`{json.dumps(field['default'])}`"
        if self.defaults.get(path) not in (None, {}) or (path in self.defaults and not variants):
            return _cell(f"`{json.dumps(self.defaults[path])}`")
        if variants:
            return "its fields' defaults"
        return "-"

    def _type(self, field: dict[str, Any], path: str, variants: list[Any]) -> str:
        if variants:
            links = [
                f"[{label if len(variants) > 1 else 'section'}](#{_anchor(path, label)})"
                for label, _ in variants
            ]
            options = field.get("anyOf", field.get("oneOf", [field]))
            listed = any(o.get("type") == "array" for o in options)
            kinds = {
                self._plain_type(o)
                for o in options
                if not self._is_model(o) and o.get("type") != "array"
            }
            extra = " or " + " or ".join(sorted(kinds)) if kinds else ""
            kind = "list of objects" if listed else "object"
            return f"{kind} (" + ", ".join(links) + ")" + extra
        return _cell(self._plain_type(field))

    def _plain_type(self, node: dict[str, Any]) -> str:
        node = self._resolve(node)
        for key in ("anyOf", "oneOf"):
            if key in node:
                return " or ".join(dict.fromkeys(self._plain_type(o) for o in node[key]))
        if "const" in node:
            return f"`{json.dumps(node['const'])}`"
        if "enum" in node:
            return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
        kind = node.get("type")
        if isinstance(kind, list):
            return " or ".join(kind)
        if kind == "array":
            if "prefixItems" in node:
                inner = ", ".join(self._plain_type(i) for i in node["prefixItems"])
                return f"[{inner}]"
            items = node.get("items")
            return f"list of {self._plain_type(items)}" if items else "list"
        if kind == "object" or (kind is None and "additionalProperties" in node):
            values = node.get("additionalProperties")
            if isinstance(values, dict) and values:
                return f"map of string to {self._plain_type(values)}"
            return "map"
        if kind is None:
            return "any"
        return kind + _bounds(node)


def _bounds(node: dict[str, Any]) -> str:
    marks = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            marks.append(f"{sign} {node[key]}")
    if "minLength" in node:
        marks.append(f"length >= {node['minLength']}")
    if "maxLength" in node:
        marks.append(f"length <= {node['maxLength']}")
    if "pattern" in node:
        marks.append(f"matching `{node['pattern']}`")
    return f" ({', '.join(marks)})" if marks else ""


def _anchor(path: str, label: str | None) -> str:
    text = path + ("-" + label if label else "")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _text(text: str) -> str:
    """Markdown of a description: Sphinx roles dropped, HTML escaped outside code spans."""
    text = _ROLE.sub("`", text)
    out, end = [], 0
    for code in _CODE_SPAN.finditer(text):
        out += [_escape(text[end : code.start()]), code.group(0)]
        end = code.end()
    return "".join([*out, _escape(text[end:])])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    """A table cell: HTML escaped outside code spans, pipes escaped everywhere."""
    return _text(text).replace("|", "\\|")
