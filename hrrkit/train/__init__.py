"""Training loops and recipes."""
