"""HRRDetector, baselines, the backbone registry and the serialisable detector config."""
