"""Self-contained interactive HTML reports rendered from stored coverage JSON and run logs."""
