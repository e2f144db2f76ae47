"""Feature normalizations for ESPnet's ``normalize:`` choice."""
