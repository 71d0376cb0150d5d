"""``rlhf recipe-fields [SECTION]``: every recipe field with its type, default, limits and
description, read from the config models (rlhf/config.py, rollout/engines.py), so it cannot
drift from them. ``--markdown`` writes the same as docs/recipes.md (a test keeps that file equal
to this output)::

    rlhf recipe-fields --markdown > docs/recipes.md
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rlhf.config import Recipe


@dataclass
class Field:
    path: str
    type: str
    default: str
    limits: str
    description: str


@dataclass
class Section:
    """One config model at a place in the recipe (a variant of a union adds its ``type``)."""

    path: str
    doc: str
    fields: list[Field]
    variant: str | None = None

    @property
    def title(self) -> str:
        return self.path + (f" (type: {self.variant})" if self.variant else "")


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation holds (a section, an optional one, a union's variants)."""
    if _is_model(annotation):
        return [annotation]
    out: list[type[BaseModel]] = []
    for a in typing.get_args(annotation):
        out += _models_in(a)
    return out


def fmt_type(t: Any) -> str:
    if t is type(None):
        return "null"
    if _is_model(t):
        return "section"
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Annotated:
        return fmt_type(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = list(dict.fromkeys(fmt_type(a) for a in args))
        return " | ".join(parts)
    if origin in (list, tuple, dict):
        inner = ", ".join(fmt_type(a) for a in args)
        return {"list": f"list[{inner}]", "tuple": f"[{inner}]", "dict": f"dict[{inner}]"}[origin.__name__]
    return getattr(t, "__name__", str(t))


def _default(f: FieldInfo) -> str:
    if f.default_factory is not None:
        value = f.default_factory()  # type: ignore[call-arg]
    elif f.default is PydanticUndefined:
        return "required"
    else:
        value = f.default
    if isinstance(value, BaseModel):
        tag = type(value).model_fields.get("type")
        return "(section)" if tag is None else f"{{type: {tag.default}}}"
    return json.dumps(value)


def _limits(f: FieldInfo) -> str:
    out = []
    for m in f.metadata:
        if isinstance(m, at.Ge):
            out.append(f">= {m.ge}")
        elif isinstance(m, at.Gt):
            out.append(f"> {m.gt}")
        elif isinstance(m, at.Le):
            out.append(f"<= {m.le}")
        elif isinstance(m, at.Lt):
            out.append(f"< {m.lt}")
        elif isinstance(m, at.MinLen):
            out.append(f"length >= {m.min_length}")
    return ", ".join(out)


def sections(model: type[BaseModel] = Recipe, path: str = "", variant: str | None = None) -> list[Section]:
    """The recipe's sections in field order: each with its leaf fields, then its subsections."""
    own: list[Field] = []
    subs: list[Section] = []
    for name, f in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        models = _models_in(f.annotation)
        if models:
            union = len(models) > 1
            for m in models:
                tag = m.model_fields["type"].default if union and "type" in m.model_fields else None
                subs += sections(m, key, tag)
            if path:  # a section inside a section: listed as a field too (it can be null)
                own.append(Field(key, fmt_type(f.annotation), _default(f), "", f.description or ""))
            continue
        if variant is not None and name == "type":
            continue  # the variant's heading names it
        own.append(Field(key, fmt_type(f.annotation), _default(f), _limits(f), f.description or ""))
    doc = " ".join((model.__doc__ or "").split()) if model.__doc__ and model is not Recipe else ""
    here = [Section(path, doc, own, variant)] if path else []
    return here + subs


def render_text(secs: list[Section]) -> str:
    out = []
    for s in secs:
        out.append(f"[{s.title}]" + (f"  {s.doc}" if s.doc else ""))
        for f in s.fields:
            lim = f"  ({f.limits})" if f.limits else ""
            out.append(f"  {f.path}: {f.type} = {f.default}{lim}")
            if f.description:
                out.append(f"      {f.description}")
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(secs: list[Section]) -> str:
    out = ["# Recipe fields", "",
           "Generated from the config models by `rlhf recipe-fields --markdown > docs/recipes.md`"
           " (tests/test_recipe_fields.py keeps it in sync). A recipe is YAML with these sections;"
           " any field can be overridden on the command line as `section.field=value`. A section"
           " with variants is picked by its `type` field.", ""]
    for s in secs:
        out += [f"## {s.title}", ""] + ([s.doc, ""] if s.doc else [])
        if not s.fields:
            continue
        out += ["| field | type | default | limits | description |", "|---|---|---|---|---|"]
        out += [f"| `{f.path}` | {_cell(f.type)} | `{_cell(f.default)}` | {_cell(f.limits)} | "
                f"{_cell(f.description)} |" for f in s.fields]
        out.append("")
    return "\n".join(out)


def select(secs: list[Section], section: str | None) -> list[Section]:
    if not section:
        return secs
    chosen = [s for s in secs if s.path == section or s.path.startswith(section + ".")]
    if not chosen:
        top = sorted({s.path.split(".")[0] for s in secs})
        raise ValueError(f"no recipe section {section!r}; sections: {', '.join(top)}")
    return chosen


def command(args: argparse.Namespace) -> int:
    try:
        secs = select(sections(), args.section)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_markdown(secs) if args.markdown else render_text(secs), end="")
    return 0


def add_parser(sub: Any) -> None:
    rf = sub.add_parser("recipe-fields", help="every recipe field: type, default, limits, description")
    rf.add_argument("section", nargs="?", default=None, help="only this section, e.g. rollout.engine")
    rf.add_argument("--markdown", action="store_true", help="as Markdown (docs/recipes.md)")
    rf.set_defaults(fn=command)
