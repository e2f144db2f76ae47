"""Pure torch building blocks (no ESPnet imports)."""
