"""What a user's record string keeps, and the limits that bound its size and each write's work.

Kept: the first event (tenure), the last (recency), every purchase (lifetime features), and the
MAX_RECENT_RECORDS newest other events not older than PRUNE_AFTER_S. Each rule drops only records that
more events can never bring back (a record that is not first or last, or is too old, or has that many
newer non-purchase records, stays so as the set grows and time moves on), so for prune times that do
not go backwards keep(keep(A) | B) == keep(A | B): the string depends on the set of events alone.
"""

from __future__ import annotations

from typing import Final

from app.features import spec

# Non-purchase records older than the longest window (plus a day of margin) are never read again.
PRUNE_AFTER_S: Final = (spec.LONGEST_WINDOW_DAYS + 1) * spec.DAY_SECONDS

MAX_RECENT_RECORDS: Final = 4_096
"""Most non-purchase records kept per user: beyond it the oldest are dropped (the first event and
purchases always stay).

Why 4,096: it bounds what one user costs. Memory: 66 KB of such records (a typical user holds ~90
records, 1.4 KB). Time: the write script makes one pass over the stored records (each one's type and
the start of its event-id fingerprint, read in one call) and probes a few per new one, so 1,000 new
events for a user who sent 10,000 take 2 to 4 ms inside Redis (bench/online_store.py). The heaviest
simulated users send ~530 events in 90 days: 8x headroom.

For a user over the cap, as of the store's now:
- exact: days_since_last_event (the last event stays), tenure_days (the first stays), and the
  features of purchases alone: purchase_count_{w}d, purchase_amount_{w}d, days_since_last_purchase,
  lifetime_purchases, lifetime_spend, purchase_gap_mean_days, purchase_gap_std_days;
- exact while the w-day window holds at most MAX_RECENT_RECORDS non-purchase events: the other
  `{type}_count_{w}d`, refund_amount_{w}d, cart_conversion_30d, review_rating_mean_90d and
  low_rating_count_90d. So 1-day counts stay exact below 4,096 events in a day, 7-day ones below
  ~585 a day, 30-day ones below ~136 a day, 90-day ones below ~45 a day;
- beyond that, counts, refund amounts and low ratings undercount (only the newest MAX_RECENT_RECORDS
  events are seen), cart_conversion_30d overstates (carts undercount, purchases do not) and
  review_rating_mean_90d averages the newest reviews only.
"""

MAX_PURCHASE_RECORDS: Final = 4_096
"""Most purchases kept per user. Lifetime features need every purchase, so the cap above spares them;
without this one a sender of endless purchases would grow the string, and each write's work, without
bound. Beyond it new purchases are refused as `user_over_capacity`: what is stored, and the features
of the accepted events, stay exact. 4,096 is 10 purchases a day for 400 days, far above a genuine
customer (simulated buyers make at most 32 in 150 days); with both caps full a string holds 8,193
records (131 KB). Which purchases fit depends on which came first: for such users, and only for them,
the stored set depends on arrival order."""
