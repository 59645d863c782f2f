"""Lifts the recursion limit first, hoping to crash the interpreter. Expected: RecursionError."""

import sys


def down(n):
    return down(n + 1) + 1


def main():
    sys.setrecursionlimit(10**8)
    return down(0)
