"""Burns CPU in a loop, ignoring the wall clock. Expected: CpuLimitExceeded (cpu_s < timeout)."""


def main():
    n = 0
    while True:
        n += 1
