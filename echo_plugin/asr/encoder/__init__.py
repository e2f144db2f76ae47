"""Echo asr encoder package."""
