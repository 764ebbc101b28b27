"""The advisor loop: coverage gaps drive generation, curation and responses."""
