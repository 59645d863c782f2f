"""Leaves with os._exit(3) before any result. Expected: Crashed."""

import os


def main():
    """Exit at once."""
    os._exit(3)
