"""Echo asr frontend package."""
