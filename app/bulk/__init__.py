"""Work on many users at once, outside HTTP: loading event history into the online store, and scoring
lists of users, with the same validation, records, script and model as the service."""
