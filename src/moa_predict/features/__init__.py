"""Feature transforms, fit inside each CV fold only."""
