"""Echo asr package."""
