"""Prints 200 kB to each stream, then succeeds. Expected: ok, both streams truncated and flagged."""

import sys


def main():
    for _ in range(200):
        print("o" * 1023)
        print("e" * 1023, file=sys.stderr)
    return "done"
