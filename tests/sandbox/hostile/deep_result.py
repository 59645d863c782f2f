"""Returns a list nested ``depth`` deep (built iteratively, so building it is fine).

Expected: ResultNotSerializable (the worker's encoder refuses it); the run is recorded.
"""


def main(depth):
    """Nest."""
    value = []
    for _ in range(depth):
        value = [value]
    return value
