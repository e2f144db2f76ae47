"""Echo asr decoder package."""
