"""Rotary position embeddings: angle/radius sources plus one shared apply step."""
