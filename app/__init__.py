"""Real-time churn scoring for e-commerce platforms."""
