"""Returns every environment variable it can see. Expected: ok, without the host's secrets."""

import os


def main():
    return dict(os.environ)
