"""Starts interpreters in a loop. Expected: ProcessLimitExceeded."""

import subprocess
import sys


def main():
    children = []
    while True:
        children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
