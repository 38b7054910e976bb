"""A warning message as the CRM reads it: stream fields (all text) to typed JSON values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

# Fields holding JSON (a list or null, an object) and numbers; every other field is text.
JSON_FIELDS: Final = ("reasons", "action_params")
NUMBER_FIELDS: Final = ("churn_probability",)
INT_FIELDS: Final = ("policy_rule",)


def decode(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The message as one JSON object, its stream entry id as `id` first."""
    message: dict[str, Any] = {"id": entry_id}
    for name, value in fields.items():
        if name in JSON_FIELDS:
            message[name] = json.loads(value)
        elif name in NUMBER_FIELDS:
            message[name] = float(value)
        elif name in INT_FIELDS:
            message[name] = int(value)
        else:
            message[name] = value
    return message
