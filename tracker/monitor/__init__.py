"""The watcher: pure decisions, the loop, its lock, notifications from outside, the sources."""
