from app.training import cdnow


def test_master_log_has_every_row_and_customer() -> None:
    events = cdnow.master_events()
    assert len(events) == 69_659
    assert events["user_id"].nunique() == 23_570
    assert (events["kind"] == 4).all() and events["cents"].min() >= 0


def test_sample_is_the_standard_test_set() -> None:
    sample = cdnow.sample_user_ids()
    assert len(sample) == 2_357
    assert set(sample) <= set(cdnow.master_events()["user_id"])
