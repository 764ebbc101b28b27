"""Coverage engine: embed prompts, assign them to principle anchors, discover clusters, compute metrics."""
