"""The intervention policy: which action a warned user gets, and who is held back as the control group.

A policy is a table of actions (each with a daily budget) and an ordered list of rules; the first rule
whose tier, segment and top reason all match names the action. A rule leaves a field out to match
anything; segment and reason are shell-style patterns (`refund_*`). A rule naming a reason never
matches a user scored without reasons: the batch that scored them computed none.

The control group is a fixed share of warned users, drawn by a seeded hash of the user id as the shop
knows it: the same user is in the same group for as long as the seed stays, on every replica, and an
analyst can recompute the groups from the ids alone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NO_ACTION: Final = "none"
ActionName = str
_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,39}$"  # part of Redis key names: kept plain


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["coupon", "recommendation", "contact"]
    # What the CRM needs to carry it out, passed on as they are: a coupon's value and currency, a
    # recommendation's type, a contact's channel.
    params: dict[str, str | int | float] = {}
    # Warnings given this action per UTC day (of the scoring time); beyond it the action is `none`.
    daily_budget: int = Field(ge=0)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: Literal["low", "medium", "high"] | None = None
    segment: str | None = None
    reason: str | None = None
    action: str

    def matches(self, tier: str, segment: str, top_reason: str | None) -> bool:
        if self.tier is not None and self.tier != tier:
            return False
        if self.segment is not None and not fnmatchcase(segment, self.segment):
            return False
        return self.reason is None or (top_reason is not None and fnmatchcase(top_reason, self.reason))


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[str, Action]
    rules: list[Rule]

    @model_validator(mode="after")
    def _rules_name_known_actions(self) -> Policy:
        for name in self.actions:
            if name == NO_ACTION or not re.match(_NAME_PATTERN, name):
                raise ValueError(f"action name {name!r}: lower-case letters, digits and _, not 'none'")
        for index, rule in enumerate(self.rules):
            if rule.action != NO_ACTION and rule.action not in self.actions:
                raise ValueError(f"rules[{index}].action: {rule.action!r} is not in actions")
        return self

    def choose(self, tier: str, segment: str, top_reason: str | None) -> tuple[ActionName, int]:
        """The action of the first matching rule and that rule's index; (`none`, -1) when none matches."""
        for index, rule in enumerate(self.rules):
            if rule.matches(tier, segment, top_reason):
                return rule.action, index
        return NO_ACTION, -1


DEFAULT_POLICY: Final = Policy.model_validate(
    {
        "actions": {
            "service_call": {
                "kind": "contact",
                "params": {"channel": "phone", "team": "customer_care"},
                "daily_budget": 50,
            },
            "coupon_20": {"kind": "coupon", "params": {"value": 20, "currency": "EUR"}, "daily_budget": 200},
            "coupon_10": {"kind": "coupon", "params": {"value": 10, "currency": "EUR"}, "daily_budget": 1000},
            "recommend_bestsellers": {
                "kind": "recommendation",
                "params": {"type": "bestsellers"},
                "daily_budget": 10000,
            },
        },
        "rules": [
            {"tier": "high", "reason": "refund_*", "action": "service_call"},
            {"tier": "high", "reason": "support_contact_*", "action": "service_call"},
            {"tier": "high", "reason": "low_rating_*", "action": "service_call"},
            {"tier": "high", "segment": "big spenders", "action": "coupon_20"},
            {"tier": "high", "segment": "newcomers", "action": "recommend_bestsellers"},
            {"tier": "high", "action": "coupon_10"},
        ],
    }
)


@dataclass(frozen=True)
class ControlGroup:
    """`share` of users, chosen by the seeded hash of their id."""

    share: float
    seed: str

    def holds(self, user_id: str) -> bool:
        return control_draw(self.seed, user_id) < self.share


def control_draw(seed: str, user_id: str) -> float:
    """The user's uniform draw in [0, 1): 64 bits of BLAKE2b of the seed and the id."""
    digest = hashlib.blake2b(
        user_id.encode(), digest_size=8, key=seed.encode()[:64], person=b"churn-control"
    ).digest()
    return int.from_bytes(digest, "big") / 2**64
