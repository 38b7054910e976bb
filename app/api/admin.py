"""Model operations: reload the served model, run a shadow beside it, read its drift (admin scope to
change anything; /model/drift reads like /model)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.auth import Caller
from app.api.deps import from_state, require
from app.api.errors import error
from app.model.bundle import BundleError
from app.model.operations import VERSION_PATTERN, ModelOperations, UnknownVersion

router = APIRouter(tags=["model operations"])

OperationsDep = Annotated[ModelOperations, Depends(from_state("model_ops"))]
AdminCaller = Annotated[Caller | None, require("admin")]
# The example loads what model_store/CURRENT names, which any store has.
EXAMPLE = {"requestBody": {"content": {"application/json": {"example": {"version": None}}}}}


class ModelChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        description="A bundle folder in the model store; null or absent: the one model_store/CURRENT names.",
    )


class ModelReloaded(BaseModel):
    version: str
    previous_version: str
    loaded_at: datetime
    load_seconds: float
    drift: str  # whether drift is monitored against this bundle, and if not, why


class ShadowState(BaseModel):
    version: str
    loaded_at: datetime
    window_rows: int
    rows: int
    spearman: float | None
    tier_agreement: float | None
    mean_abs_difference: float | None
    rows_skipped: int
    rows_pending: int


class ShadowDropped(BaseModel):
    dropped: str | None  # the shadow's version; null when none was running


def version_of(choice: ModelChoice | None) -> str | None:
    return choice.version if choice else None


def key_of(caller: Caller | None) -> str | None:
    return caller.key_id if caller else None


def refused(exc: BundleError | UnknownVersion) -> Response:
    """A well-formed version the store does not have is not found (404); a bundle that fails a check is
    refused (409)."""
    if isinstance(exc, UnknownVersion):
        return error(404, "unknown_version", str(exc), [{"field": "version", "message": str(exc)}]).response()
    return error(409, "bundle_refused", str(exc), [{"field": "version", "message": str(exc)}]).response()


@router.post("/admin/model", response_model=ModelReloaded, openapi_extra=EXAMPLE)
async def reload_model(caller: AdminCaller, ops: OperationsDep, choice: ModelChoice | None = None) -> Any:
    """Load, verify and warm up a bundle beside the served one, then serve it from the next request on.
    Requests admitted before keep the model they were admitted with. A bundle that fails a check is
    refused (409, naming the check) and the served model stays. Reloads run one at a time. SIGHUP to the
    service reloads model_store/CURRENT the same way."""
    try:
        return await ops.reload(version_of(choice), key_of(caller), "api")
    except (BundleError, UnknownVersion) as exc:
        return refused(exc)


@router.post("/admin/model/shadow", response_model=ShadowState, openapi_extra=EXAMPLE)
async def set_shadow(caller: AdminCaller, ops: OperationsDep, choice: ModelChoice | None = None) -> Any:
    """Score a candidate bundle beside the served one on the same batches, after their answers are out;
    its agreement with the served model shows in /model and the churn_shadow_* metrics. Replaces any
    shadow. With model_store/CURRENT already pointing at a new bundle, shadowing it first and then
    reloading is the cautious way to promote it."""
    try:
        return await ops.set_shadow(version_of(choice), key_of(caller), "api")
    except (BundleError, UnknownVersion) as exc:
        return refused(exc)


@router.delete("/admin/model/shadow")
async def drop_shadow(caller: AdminCaller, ops: OperationsDep) -> ShadowDropped:
    """Stop scoring the shadow; dropping when none runs is no error."""
    return ShadowDropped(dropped=await ops.drop_shadow(key_of(caller)))


@router.get("/model/drift", dependencies=[require("score", "admin", public_as="model")])
async def drift(ops: OperationsDep) -> dict[str, Any]:
    """Each feature's and the score's population stability index over the last served rows against the
    training distribution, with both sides' bin shares (off, with the reason, for a bundle without one)."""
    return ops.drift.describe(full=True)
