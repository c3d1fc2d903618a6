"""One way to turn a pydantic ValidationError into our one-line error: where, then what.

Every settings file, wire body, manifest, recipe and search space is a pydantic model; when one
does not validate, the user sees `WHAT: where: problem; where: problem` and a fix, never
pydantic's multi-line report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from edgewise.core.errors import ConfigError, EdgewiseError

Model = TypeVar("Model", bound=BaseModel)
Location = Sequence[int | str]


def dotted(location: Location) -> str:
    return ".".join(str(part) for part in location) or "(root)"


def describe_validation(error: ValidationError, *, where: Callable[[Location], str] = dotted,
                        first_only: bool = False) -> str:
    """`where: problem` for each problem (or the first), joined by `; `."""
    problems = error.errors()[:1] if first_only else error.errors()
    described = []
    for problem in problems:
        message = str(problem["msg"]).removeprefix("Value error, ")
        place = where(problem["loc"])
        described.append(f"{place}: {message}" if place else message)
    return "; ".join(described)


def validate_as(model: type[Model], data: object, what: str, *, error: type[EdgewiseError] = ConfigError,
                fix: str | None = None, where: Callable[[Location], str] = dotted,
                first_only: bool = False) -> Model:
    """`data` as `model`, or `error("WHAT: where: problem", fix)`."""
    try:
        return model.model_validate(data)
    except ValidationError as problem:
        raise error(f"{what}: {describe_validation(problem, where=where, first_only=first_only)}", fix) from None
