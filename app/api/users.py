from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import ClockDep, StoreDep, require
from app.features import spec
from app.schemas import PRINTABLE_ID, UserFeatures

router = APIRouter(tags=["users"], dependencies=[require("score")])

UserIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=PRINTABLE_ID)]


@router.get("/users/{user_id}/features")
async def user_features(user_id: UserIdPath, store: StoreDep, clock: ClockDep) -> UserFeatures:
    """The user's current feature vector by name, exactly as /score sees it."""
    now = clock.now()
    raw, known = await store.read([user_id], now)
    features = dict(zip(spec.FEATURE_NAMES, map(float, raw[0]), strict=True))
    return UserFeatures(user_id=user_id, as_of=now, known_user=bool(known[0]), features=features)
