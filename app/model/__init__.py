"""The model bundle and everything that turns a feature matrix into scores."""
