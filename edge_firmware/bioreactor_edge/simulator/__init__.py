"""A simulated reactor below the bus layer: chips that speak the real chips' bytes."""
