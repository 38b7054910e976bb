"""The public event schema, shared by the HTTP API and the training files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from app.features.events import EventType, RejectionReason

# Printable ASCII, so ids survive logs, URLs and Redis key names unchanged.
PRINTABLE_CHAR = r"[\x20-\x7e]"
PRINTABLE_ID = rf"^{PRINTABLE_CHAR}+$"
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=PRINTABLE_ID)]

# Event times are stored as unsigned 32-bit Unix seconds (see features/spec.py): 1970 to 2106. The text
# is held to the years 1971 to 2104 (RFC3339_TIME), which no UTC offset can carry outside that range, so
# the published pattern says exactly which times are taken; the bounds below stay as the store's guard.
EARLIEST_TS = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TS = datetime(2106, 1, 1, tzinfo=UTC)
MAX_AMOUNT = 10_000_000.0

# RFC 3339 date-time: seconds required, a fraction optional, `T` (or `t`) between date and time, `Z` (or
# `z`) or ±hh:mm. pydantic alone also takes Unix times as text, times without seconds, a space or `_` for
# the `T`, ±hhmm and a comma before the fraction. Digits' ranges are left to pydantic, and so is a missing
# offset, so that its message names the missing time zone.
RFC3339_YEAR = r"(?:197[1-9]|19[89][0-9]|20[0-9]{2}|210[0-4])"
TS_YEARS = range(1971, 2105)  # the years RFC3339_YEAR matches, for times that come as datetimes
RFC3339_TIME = (
    rf"{RFC3339_YEAR}-[0-9]{{2}}-[0-9]{{2}}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
TS_MESSAGE = (
    "must be RFC 3339 text with seconds and a time zone, in the years 1971 to 2104, e.g. "
    "2026-01-31T12:00:00Z or 2026-01-31T14:00:00.5+02:00"
)


class RFC3339Only:
    """Holds a datetime field to RFC 3339 text (or a datetime object, from Python).

    The text is matched in pydantic-core before it is read as a time, with no Python call per event: a
    Python validator doing the same cost 0.3 µs per event, 15% of validating a batch of events."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        moment = handler(source)
        text = core_schema.str_schema(pattern=f"^(?:{RFC3339_TIME})$", strict=True)
        text_or_datetime = core_schema.union_schema(
            [core_schema.is_instance_schema(datetime), text], mode="left_to_right"
        )
        return core_schema.json_or_python_schema(
            json_schema=_shape_then(text, moment), python_schema=_shape_then(text_or_datetime, moment)
        )


def _shape_then(shape: CoreSchema, moment: CoreSchema) -> CoreSchema:
    """`shape`, its errors all told as TS_MESSAGE, then `moment` reading the time."""
    told = core_schema.custom_error_schema(
        shape, custom_error_type="rfc3339_time", custom_error_message=TS_MESSAGE
    )
    return core_schema.chain_schema([told, moment])


EventTime = Annotated[
    AwareDatetime,
    Field(ge=EARLIEST_TS, lt=LATEST_TS),
    RFC3339Only(),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": f"^{RFC3339_TIME}$"}),
]

# Which optional field belongs to which event types, and whether it is required there.
FIELD_RULES: dict[str, tuple[frozenset[str], bool]] = {
    "amount": (frozenset({"purchase", "refund"}), True),
    "items": (frozenset({"purchase"}), False),
    "rating": (frozenset({"review"}), True),
}


def _whole_number(value: Any) -> Any:
    # JSON Schema's "integer" is any number without a fractional part: 4.0 is one, as 4 is. Only such
    # floats are turned into ints here; everything else goes on to the strict check unchanged.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# On a strict int: an integer as JSON Schema means it, a JSON number with no fractional part (2 or 2.0),
# never a string or a boolean.
WHOLE_NUMBER = BeforeValidator(_whole_number)


class Event(BaseModel):
    """One behavioural event. `event_id` is the client's idempotency key.

    Checks run in pydantic-core where they can (the time's range is a field constraint), and the rules
    tying fields to types are one check per event rather than one per field: /events validates up to
    1,000 events per request, and Python validators per field were half of that work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier
    user_id: Identifier
    type: EventType
    ts: EventTime
    amount: Annotated[float | None, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)] = None
    items: Annotated[int, Field(ge=1, le=1_000_000, strict=True), WHOLE_NUMBER] | None = None
    rating: Annotated[int, Field(ge=1, le=5, strict=True), WHOLE_NUMBER] | None = None

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
# A fixed time for the documented example; the service takes it as a late event (200, `too_late`) once it
# lies beyond the allowed lateness.
EXAMPLE_TS = "2026-01-31T12:00:00Z"


class EventBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {"event_id": "e-1", "user_id": "u-42", "type": "session_start", "ts": EXAMPLE_TS}
                    ]
                }
            ]
        },
    )

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)


REJECTION_REASONS = (
    "Why the event was not applied. `too_late`: its time is before the allowed lateness. `in_future`: "
    "its time is beyond the allowed clock skew. `user_over_capacity`: the user already has the most "
    "purchases the store keeps. `erased`: the user was erased after the event's time. `conflict`: the "
    "user's event_id is already taken by an event with another time (to the second), type, amount or "
    "rating (in this request or an earlier one); the stored event stands and nothing is counted twice."
)


class RejectedEvent(BaseModel):
    index: int
    event_id: str
    reason: RejectionReason = Field(description=REJECTION_REASONS)


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_ids": ["u-42"], "explain": True}]}
    )

    user_ids: list[Identifier] = Field(min_length=1, max_length=MAX_BATCH)
    explain: bool = Field(default=True, strict=True)


class Reason(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "feature": "refund_count_30d",
                    "value": 3.0,
                    "contribution": 1.42,
                    "typical_value": 0.0,
                    "text": "3 refunds in the last 30 days (customers who stay: typically 0)",
                }
            ]
        }
    )

    feature: str = Field(description='The feature\'s name (app/features/spec.py), or "no history"')
    value: float = Field(description="The user's value of the feature")
    contribution: float = Field(
        description="Added log-odds of churn on the calibrated scale: calibration slope x gradient of the "
        "logit x (value - training mean), in the scaled feature space. Positive (a feature is a reason only "
        'when it pushes risk up); 0 for "no history"'
    )
    typical_value: float | None = Field(
        description="The feature's median among retained training users (no churn) at the latest training "
        "snapshot; null when the model bundle does not store it"
    )
    text: str = Field(description="The reason in plain words, with the value and the typical value")


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
