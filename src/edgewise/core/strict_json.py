"""One strict JSON loader for everything edgewise signs or receives.

Python's `json.loads` is lenient in ways that matter once the text comes from someone else:

- duplicate keys are accepted and the *last* value kept, while another reader (a verifier in
  another language, a human) may see the first: a signed manifest could mean two things;
- `NaN`, `Infinity` and numbers like `1e999` become floats no database or comparison handles;
- integers of any length are accepted (a 400-digit sequence number reaches the database);
- lone UTF-16 surrogates (`"\\ud800"`) and NUL characters become `str` values that cannot be
  stored as UTF-8 or in a PostgreSQL text column;
- nesting deep enough exhausts the interpreter's stack (RecursionError, a crash or a 500).

`loads` refuses all of these with `StrictJSONError`, a one-line message naming the problem.
Callers wrap it in the error of their context (InvalidBundle for a manifest, 422 for a request).
"""

from __future__ import annotations

import json
import math
from typing import Any

from edgewise.core.errors import EdgewiseError

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_INT_DIGITS = 20  # refused before conversion: int() of a huge digit string is itself slow


class StrictJSONError(EdgewiseError):
    default_fix = "send well-formed JSON: unique keys, finite numbers, 64-bit integers, valid UTF-8, depth <= 64"


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise StrictJSONError(f"integer {text[:24]}... is out of the 64-bit range")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise StrictJSONError(f"integer {text} is out of the 64-bit range")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:24]} is not a finite 64-bit float")
    return value


def _constant(name: str) -> float:
    raise StrictJSONError(f"{name} is not valid JSON (numbers must be finite)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key[:64]!r} in a JSON object")
        result[key] = value
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_int, parse_float=_float,
                            parse_constant=_constant)


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored or signed as UTF-8 text (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (not valid UTF-8)"
    return None


def _check_text(text: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise StrictJSONError(f"text {problem}")


def _check_tree(value: Any, max_depth: int) -> None:
    """Depth and string contents, without recursion (the tree may be as deep as the parser allowed)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise StrictJSONError(f"JSON is nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def loads(data: str | bytes | bytearray, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `data` (UTF-8 bytes or text) strictly; StrictJSONError names the first problem."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise StrictJSONError(f"JSON is not valid UTF-8 (at byte {error.start})") from None
    else:
        text = data
    text = text.removeprefix("\ufeff")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise StrictJSONError(f"JSON is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as error:
        raise StrictJSONError(f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    _check_tree(value, max_depth)
    return value
