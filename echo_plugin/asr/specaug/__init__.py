"""Feature-domain augmentation for ESPnet's ``specaug`` slot."""
