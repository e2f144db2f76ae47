"""Echo bin package."""
