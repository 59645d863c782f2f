"""Writes a file outside its scratch folder. Expected: SandboxViolation; the file never appears."""


def main(path):
    with open(path, "w") as fh:
        fh.write("pwned")
    return "written"
