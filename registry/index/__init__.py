"""The SQL index: its contract, the two backends, sync from git and the watcher."""
