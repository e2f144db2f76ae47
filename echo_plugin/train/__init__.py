"""Training-time helpers layered on ESPnet's own trainer."""
