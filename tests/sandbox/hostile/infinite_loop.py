"""Never returns. Expected: Timeout."""


def main():
    while True:
        pass
