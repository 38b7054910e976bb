"""Turning scores into action: warnings about high-risk users to the CRM (a Redis Stream), the
intervention policy that picks each warning's action, and the report that measures the actions' effect."""
