"""Structured answers: find the JSON object in a model's answer, repair common slips offline, validate it.

Small models write almost-JSON: a trailing comma, single quotes, a code fence, a ``//`` comment, a missing closing
brace.  Asking the model again costs a request (and often gets the same slip back), so such answers are repaired
offline with ``json_repair`` first.  An answer that was *cut off* (``finish_reason == "length"``, or text that stops
inside a string) is never repaired: ``json_repair`` would close the brackets and silently return a partial list.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["JSONProblem", "cut_off", "extract_json_object", "parse_answer", "repair_prompt"]

ModelT = TypeVar("ModelT", bound="BaseModel")

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_BRACE_STARTS = 200


class JSONProblem(Exception):
    """Why an answer could not be turned into the requested model (the message goes to the repair prompt)."""


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model answer, tolerating code fences and surrounding prose.

    Order: the whole answer, then each fenced block, then the first ``{`` from which a complete
    JSON value decodes.  Raises ``ValueError`` with a short reason when there is none.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("the answer is empty")
    for candidate in [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for n, match in enumerate(re.finditer(r"\{", text)):
        if n >= _MAX_BRACE_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object found in the answer")


def cut_off(text: str, finish_reason: str | None) -> bool:
    """Whether the answer stopped before its JSON was complete: the token limit was hit, or it ends mid-string.

    The second catches endpoints that stop early without saying so (a stop sequence, a proxy's own limit): a model
    that finished on its own closes its strings.
    """
    return finish_reason == "length" or _ends_inside_string(text)


def _ends_inside_string(text: str) -> bool:
    """Whether the first JSON value in ``text`` is still inside a quoted string when the text ends.

    A small lexer: double-quoted strings with backslash escapes, ``//`` and ``/* */`` comments, and single-quoted
    strings read as a model writes them (opened where a value or key starts, closed only by a quote before ``,`` ``:``
    ``]`` ``}`` or the end, so an apostrophe inside does not end them); it stops as soon as the top-level value
    closes (prose after it does not count).
    """
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return False
    i, depth, quote, n, last = min(starts), 0, "", len(text), ""
    while i < n:
        c = text[i]
        if quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote, last = "", c
        elif quote == "'":
            if c == "'" and (text[i + 1:].lstrip()[:1] in ("", ",", ":", "]", "}")):
                quote, last = "", c
        elif c == '"' or (c == "'" and last in "{[,:"):
            quote = c
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 1
        elif not c.isspace():
            last = c
            depth += (c in "{[") - (c in "}]")
            if c in "}]" and depth == 0:
                return False
        i += 1
    return bool(quote)


def parse_answer(text: str, schema: type[ModelT], finish_reason: str | None = None) -> tuple[ModelT, bool]:
    """The answer validated into ``schema``, and whether it needed an offline repair.

    Strict first (the JSON as written); then, unless the answer was cut off, ``json_repair``'s reading of it.
    Raises :class:`JSONProblem` with a one-line reason for the repair prompt.
    """
    found = False
    try:
        data = extract_json_object(text)
    except ValueError as exc:
        problem = JSONProblem(str(exc))
    else:
        try:
            return _validate(data, schema), False
        except JSONProblem as exc:
            problem, found = exc, True
    if cut_off(text, finish_reason):
        raise JSONProblem("the answer was cut off before its JSON was complete (the token limit was reached); "
                          "answer more briefly") from None
    repaired = _repaired(text)
    if repaired is None:
        raise problem from None
    try:
        return _validate(repaired, schema), True
    except JSONProblem as exc:
        raise (problem if found else exc) from None


def _repaired(text: str) -> dict[str, Any] | None:
    """``json_repair``'s reading of the answer's first JSON object, or None when it finds none."""
    import json_repair

    try:
        value = json_repair.loads(text)
    except Exception:  # json_repair is best-effort; a failure means "no repair", never a crash
        return None
    if isinstance(value, list):  # several top-level values: the first object, like extract_json_object
        value = next((v for v in value if isinstance(v, dict)), None)
    return value if isinstance(value, dict) and value else None


def _validate(data: dict[str, Any], schema: type[ModelT]) -> ModelT:
    """``schema.model_validate(data)``; a failure becomes a :class:`JSONProblem` naming at most five fields."""
    from pydantic import ValidationError

    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise JSONProblem(f"validation against {schema.__name__} failed: " + "; ".join(parts) + more) from None


def repair_prompt(problem: str, schema: type[BaseModel]) -> str:
    """The follow-up user message asking once more for valid JSON of this schema."""
    schema_json = json.dumps(schema.model_json_schema(), separators=(",", ":"))
    return (
        f"Your previous answer could not be used: {problem}. "
        "Reply again with only one valid JSON object that matches this JSON schema, "
        f"with no explanation and no code fences:\n{schema_json}"
    )
