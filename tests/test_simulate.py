import pandas as pd

from app.features.offline import validate_events
from app.training.simulate import SimulationConfig, simulate

SMALL = SimulationConfig(n_users=300, days=120, seed=3, duplicate_rate=0.02, late_rate=0.05)


def test_same_seed_same_log_and_it_follows_the_schema() -> None:
    first, second = simulate(SMALL), simulate(SMALL)
    pd.testing.assert_frame_equal(first.events, second.events)
    events = validate_events(first.events)
    assert len(events) < len(first.events)  # duplicates were sent and are dropped
    assert set(events["kind"]) == set(range(8))


def test_log_has_late_arrivals_and_churners() -> None:
    sim = simulate(SMALL)
    ts = pd.to_datetime(sim.events["ts"])
    assert (ts.diff().dt.total_seconds() < 0).mean() > 0.01  # out of order
    assert 0 < (sim.users["gone"] >= 0).mean() < 1
    assert set(sim.users["segment"]) == {"loyal_buyer", "bargain_hunter", "window_shopper", "occasional"}
