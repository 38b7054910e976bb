"""The feature specification and its two event sources: offline logs and the online Redis store."""
