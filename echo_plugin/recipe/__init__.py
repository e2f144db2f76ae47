"""Echo recipe package."""
