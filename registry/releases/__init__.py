"""Releases: computed release tags, their history, channels, health and the server check.

Layered, each module importing only those before it: ``tagged`` (reading the
release tags), ``channels`` (channel tags), ``history`` (history, what
``ID@SPEC`` names, diff), ``plan`` (which procedures changed and their bumps),
``release`` (tagging, rollback), ``health`` (moving a failing channel back),
``receive`` (the server's pre-receive check).
"""
