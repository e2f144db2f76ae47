"""Echo optim package."""
