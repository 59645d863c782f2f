"""Connects to PostgreSQL on 127.0.0.1:5432. Expected: SandboxViolation."""

import socket


def main():
    with socket.create_connection(("127.0.0.1", 5432), timeout=2) as conn:
        conn.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        return "connected"
