"""Event types and their stored codes, owned by the feature layer; the API schema imports them.

A type's code is written into every stored record and fixes the order of the `{type}_count_{w}d`
features, so codes are explicit and never renumbered: a new type takes the next free code. Any change
here changes the specification hash that model bundles are checked against.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

EventType = Literal[
    "session_start",
    "page_view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "refund",
    "review",
    "support_contact",
]

EVENT_TYPE_CODES: Final[dict[str, int]] = {
    "session_start": 0,
    "page_view": 1,
    "add_to_cart": 2,
    "remove_from_cart": 3,
    "purchase": 4,
    "refund": 5,
    "review": 6,
    "support_contact": 7,
}

# Why an event was not applied: the reply names it per event. "erased": the user was erased after the
# event's time (a late or retried event must not bring the user back). "conflict": the user's event id
# is already taken by an event with other content (time to the second, type, amount or rating).
RejectionReason = Literal["too_late", "in_future", "user_over_capacity", "erased", "conflict"]

# compute_features indexes arrays by code: every type needs exactly one code, and codes must be 0..n-1.
if set(EVENT_TYPE_CODES) != set(get_args(EventType)) or sorted(EVENT_TYPE_CODES.values()) != list(
    range(len(EVENT_TYPE_CODES))
):
    raise RuntimeError("EVENT_TYPE_CODES must give each EventType one code, numbered 0..n-1")
