"""The registry as people use it by hand: init, scaffold, hooks, proposals."""
