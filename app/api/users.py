from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from app.api.auth import Caller
from app.api.deps import ClockDep, StoreDep, from_state, require
from app.audit import AuditLog
from app.features import spec
from app.schemas import PRINTABLE_ID, UserFeatures

# Scopes per route: reading needs `score`, erasing `admin` (a router-wide scope would demand both).
router = APIRouter(tags=["users"])

# The example is the user of the other operations' examples, so "Try it out" works as it is filled in.
EXAMPLE_USER = {"a user": {"value": "u-42"}}
UserIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=PRINTABLE_ID, openapi_examples=EXAMPLE_USER)
]
AuditDep = Annotated[AuditLog, Depends(from_state("audit"))]
AdminCaller = Annotated[Caller | None, require("admin")]


class UserErased(BaseModel):
    user_id: str
    erased: bool
    keys_removed: int


@router.get("/users/{user_id}/features", dependencies=[require("score")])
async def user_features(user_id: UserIdPath, store: StoreDep, clock: ClockDep) -> UserFeatures:
    """The user's current feature vector by name, exactly as /score sees it."""
    now = clock.now()
    raw, known = await store.read([user_id], now)
    features = dict(zip(spec.FEATURE_NAMES, map(float, raw[0]), strict=True))
    return UserFeatures(user_id=user_id, as_of=now, known_user=bool(known[0]), features=features)


@router.delete("/users/{user_id}")
async def erase_user(
    user_id: UserIdPath, caller: AdminCaller, store: StoreDep, clock: ClockDep, audit: AuditDep
) -> UserErased:
    """Remove everything stored for the user. Events from before the erasure are refused from then on
    (reason `erased`), so late or retried ones cannot bring the user back. Erasing again is safe."""
    now, target = clock.now(), store.pseudonym(user_id)
    key_id = caller.key_id if caller else None
    try:
        removed = await store.erase(target, now)
    except Exception as error:  # audited, then answered as any error (a Redis outage: 503)
        audit.record(now, key_id, "erase_user", target, "failed", error=type(error).__name__)
        raise
    audit.record(now, key_id, "erase_user", target, "erased", keys_removed=removed)
    return UserErased(user_id=user_id, erased=True, keys_removed=removed)
