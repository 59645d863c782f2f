"""Releases: computed release tags, their history, channels, health and the server check."""
