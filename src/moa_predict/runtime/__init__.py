"""Runtime: thread limits and worker processes, in one place."""
