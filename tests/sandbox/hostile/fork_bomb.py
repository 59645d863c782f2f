"""Forks without end; every child forks too. Expected: ProcessLimitExceeded."""

import os


def main():
    while True:
        os.fork()
