"""Runs: execution of a version in the sandbox, contract tests, run records, doctor."""
