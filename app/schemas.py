"""The public event schema, shared by the HTTP API and the training files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.features.events import EventType, RejectionReason

# Printable ASCII, so ids survive logs, URLs and Redis key names unchanged.
PRINTABLE_CHAR = r"[\x20-\x7e]"
PRINTABLE_ID = rf"^{PRINTABLE_CHAR}+$"
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=PRINTABLE_ID)]

# Event times are stored as unsigned 32-bit Unix seconds (see features/spec.py).
EARLIEST_TS = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TS = datetime(2106, 1, 1, tzinfo=UTC)
MAX_AMOUNT = 10_000_000.0

# Which optional field belongs to which event types, and whether it is required there.
FIELD_RULES: dict[str, tuple[frozenset[str], bool]] = {
    "amount": (frozenset({"purchase", "refund"}), True),
    "items": (frozenset({"purchase"}), False),
    "rating": (frozenset({"review"}), True),
}


class Event(BaseModel):
    """One behavioural event. `event_id` is the client's idempotency key.

    Checks run in pydantic-core where they can (the time's range is a field constraint), and the rules
    tying fields to types are one check per event rather than one per field: /events validates up to
    1,000 events per request, and Python validators per field were half of that work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier
    user_id: Identifier
    type: EventType
    ts: Annotated[AwareDatetime, Field(ge=EARLIEST_TS, lt=LATEST_TS)]
    amount: Annotated[float | None, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)] = None
    items: Annotated[int | None, Field(ge=1, le=1_000_000, strict=True)] = None
    rating: Annotated[int | None, Field(ge=1, le=5, strict=True)] = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_is_rfc3339_text(cls, value: Any) -> Any:
        # Numbers would be read as Unix times silently; the schema asks for RFC 3339 text.
        if not isinstance(value, str | datetime):
            raise ValueError("must be an RFC 3339 string with a time zone, e.g. 2026-01-31T12:00:00Z")
        return value

    @model_validator(mode="after")
    def _fields_belong_to_type(self) -> Event:
        problems = []
        for name, (allowed_types, required) in FIELD_RULES.items():
            value = getattr(self, name)
            if self.type in allowed_types:
                if value is None and required:
                    problems.append((name, f"is required for type {self.type!r}"))
            elif value is not None:
                problems.append((name, f"is not allowed for type {self.type!r}"))
        if problems:
            # Raised as a ValidationError so each problem keeps its own field path (events[3].amount).
            details = [
                InitErrorDetails(type=PydanticCustomError("field_rule", message), loc=(name,), input=None)
                for name, message in problems
            ]
            raise ValidationError.from_exception_data(type(self).__name__, details)
        return self


MAX_BATCH = 1_000


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)


class RejectedEvent(BaseModel):
    index: int
    event_id: str
    reason: RejectionReason


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[Identifier] = Field(min_length=1, max_length=MAX_BATCH)
    explain: bool = Field(default=True, strict=True)


class Reason(BaseModel):
    feature: str
    value: float
    contribution: float  # added churn probability, gradient x (value - training mean)


class UserScore(BaseModel):
    user_id: str
    churn_probability: float
    risk_tier: Literal["low", "medium", "high"]
    segment: str
    known_user: bool
    reasons: list[Reason] | None  # null when the request asked for "explain": false


class ScoreResponse(BaseModel):
    model_version: str
    scored_at: datetime
    results: list[UserScore]


class UserFeatures(BaseModel):
    user_id: str
    as_of: datetime
    known_user: bool
    features: dict[str, float]


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    message: str
    detail: list[ErrorDetail] = []
