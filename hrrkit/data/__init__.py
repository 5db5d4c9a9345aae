"""Dataset layouts, image loading policy and transforms."""
