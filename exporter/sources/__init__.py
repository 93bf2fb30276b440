"""Sources: where watch envelopes come from (a live Kubernetes watch, or a replay file)."""
