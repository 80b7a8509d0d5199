"""Reading a versioned rules file (mapping tables, content rules, splitting rules): YAML checked by
a pydantic model when it is loaded, refused with the file, the field path and the reason."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

Model = TypeVar("Model", bound=BaseModel)
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class RulesDocument(BaseModel):
    """Base of a rules file's schema: a misspelt key is an error rather than an ignored rule, and
    `version: 3` reads as the text "3" (as the versions recorded so far were made)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def template(**placeholders: str) -> AfterValidator:
    """Checks that a text template fills with these placeholders (e.g. `{id}`), so an unknown
    `{name}` fails when the file is loaded, not in the middle of a run."""

    def check(value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(**placeholders)
            except (KeyError, IndexError, ValueError) as exc:
                known = ", ".join(f"{{{p}}}" for p in placeholders)
                raise ValueError(f"the only placeholder allowed is {known} ({exc!r})") from None
        return value

    return AfterValidator(check)


class RulesFileError(ValueError):
    """A rules file that cannot be used; the message names the file and the field."""


def describe_errors(exc: ValidationError) -> str:
    """Each problem as `field.path: reason`, joined by `; ` (no input value: it may be a secret)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in exc.errors())


def packaged_file(name: str) -> str:
    """Path of a file shipped in `migration_pipeline/config/`."""
    return str(resources.files("migration_pipeline.config").joinpath(name))


def load_rules_file(model: type[Model], path: str | Path, kind: str) -> Model:
    """The document in `path` validated as `model`; any problem raises `RulesFileError` naming
    `kind` (e.g. "mappings"), the file and, for a bad value, the field path and the reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(f"{kind} {path}: cannot read ({exc.strerror or exc})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesFileError(f"{kind} {path}: not valid YAML ({exc})") from None
    return validate_rules(model, document, kind, str(path))


def validate_rules(model: type[Model], document: Any, kind: str, source: str) -> Model:
    """`document` (already parsed) validated as `model`, refused as in `load_rules_file`."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise RulesFileError(f"{kind} {source}: {describe_errors(exc)}") from None
