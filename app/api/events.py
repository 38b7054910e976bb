from fastapi import APIRouter

from app import metrics
from app.api.deps import ServicesDep
from app.schemas import EventBatch, EventsAccepted, RejectedEvent

router = APIRouter(tags=["events"])


@router.post("/events")
async def post_events(batch: EventBatch, services: ServicesDep) -> EventsAccepted:
    """Apply a batch of events; answered only after Redis has applied the accepted ones."""
    result = await services.store.apply(batch.events, services.clock.now())
    metrics.EVENTS.labels("accepted", "").inc(result.accepted)
    metrics.EVENTS.labels("duplicate", "").inc(result.duplicates)
    for rejection in result.rejected:
        metrics.EVENTS.labels("rejected", rejection.reason).inc()
    return EventsAccepted(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            RejectedEvent(index=r.index, event_id=r.event_id, reason=r.reason) for r in result.rejected
        ],
    )
