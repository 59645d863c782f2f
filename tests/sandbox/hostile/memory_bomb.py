"""Allocates 10 MB blocks forever. Expected: MemoryLimitExceeded."""


def main():
    hoard = []
    while True:
        hoard.append(bytearray(10 * 1024 * 1024))
