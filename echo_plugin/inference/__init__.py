"""Using trained models: strict weight loading and transcription."""
