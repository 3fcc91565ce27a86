"""What is on disk: the run folder schema, finding runs, locks, pruning, the history database."""
