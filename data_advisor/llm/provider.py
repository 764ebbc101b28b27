"""What we ask litellm about a model: the lazy import, the price of an answer, and how to request JSON.

litellm is imported lazily (inside :func:`import_litellm`): importing it costs seconds, and merely importing the
LLM layer (e.g. for ``--help``) must stay cheap and must never touch the network.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from data_advisor import _env

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["import_litellm", "json_response_format", "response_cost", "usage_int"]


def import_litellm() -> Any:
    """Import litellm on first use (seconds of import time) and silence its stdout help banners."""
    with _env.library_defaults():  # LITELLM_LOCAL_MODEL_COST_MAP: no cost-map download at import
        import litellm

    litellm.suppress_debug_info = True
    return litellm


def usage_int(usage: Any, name: str) -> int:
    """One token count of a response's ``usage`` (object or dict); 0 when the provider sent none."""
    value = getattr(usage, name, None)
    if value is None and isinstance(usage, Mapping):
        value = usage.get(name)
    return int(value) if isinstance(value, int | float) else 0


def response_cost(response: Any) -> float:
    """litellm's price for one response, or 0.0 when the model is unknown to litellm's price map."""
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    if isinstance(cost, int | float) and cost > 0:
        return float(cost)
    try:
        cost = import_litellm().completion_cost(completion_response=response)
    except Exception:  # unknown models raise; the cost is then simply unknown
        return 0.0
    return float(cost) if isinstance(cost, int | float) and cost > 0 else 0.0


_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]")


def json_response_format(model: str, schema: type[BaseModel]) -> dict[str, Any] | None:
    """The ``response_format`` that makes ``model`` answer in JSON, or None when litellm knows of no way.

    A JSON schema (the pydantic model's own) where litellm says the model supports one, so the provider constrains
    the answer to the shape we validate; JSON mode (``{"type": "json_object"}``) where the provider takes a
    ``response_format`` at all; nothing otherwise.  ``strict`` is off: strict mode rejects ordinary pydantic schemas
    (optional fields, defaults) and the answer is validated here anyway.
    """
    kind = _json_support(model)
    if kind == "schema":
        name = _SCHEMA_NAME.sub("_", schema.__name__)[:64] or "answer"
        return {"type": "json_schema",
                "json_schema": {"name": name, "schema": schema.model_json_schema(), "strict": False}}
    if kind == "object":
        return {"type": "json_object"}
    return None


@functools.lru_cache(maxsize=64)
def _json_support(model: str) -> str | None:
    """``"schema"``, ``"object"`` or None for a litellm model string (asked once per model and process)."""
    litellm = import_litellm()
    try:
        if litellm.supports_response_schema(model=model):
            return "schema"
        provider = litellm.get_llm_provider(model)[1]
        params = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or []
    except Exception:  # an unknown provider: the call itself will say so, with a fix
        return None
    return "object" if "response_format" in params else None
