"""Pydantic base for every config object, YAML loading, and friendly validation errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from compress.core.errors import UsageError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk ``loc`` through nested models to list the fields allowed where an error occurred."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for c in candidates:
            for cc in (c, *getattr(c, "__args__", ())):
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        if nxt is None:
            return []
        current = nxt
    return list(getattr(current, "model_fields", {}))


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line naming the file, the field path and what is wrong (first error first)."""
    parts = []
    for e in err.errors()[:3]:
        loc = tuple(e.get("loc", ()))
        where = ".".join(str(p) for p in loc) or "<root>"
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden" and loc:
            allowed = _known_fields(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.5)
            msg = f"unknown key '{loc[-1]}'" + (f" (did you mean '{close[0]}'?)" if close else "")
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif e.get("type") == "missing":
            msg = "required field is missing"
        parts.append(f"{where}: {msg}")
    more = f" (+{len(err.errors()) - 3} more)" if len(err.errors()) > 3 else ""
    return f"{source}: " + "; ".join(parts) + more


def validate(model: type[M], data: Any, *, source: str) -> M:
    """Validate ``data`` into ``model`` or raise a one-line :class:`UsageError`."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UsageError(format_validation_error(err, model, source)) from None


def load_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` a file, with errors that name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"file not found: {p}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"{p}:{where}: invalid YAML: {problem}") from None


def load_model_yaml(model: type[M], path: str | Path) -> M:
    """Load and validate a YAML file into a config model."""
    data = load_yaml(path)
    if data is None:
        raise UsageError(f"{path}: the file is empty")
    return validate(model, data, source=str(path))
