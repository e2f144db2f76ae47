"""Echo data package."""
