"""Small shared utilities at the bottom of the room order (no hrrkit imports)."""
