"""The pure core: the model of a procedure and every rule about it, with no I/O.

Modules here take values (snapshots, metadata, version strings) and return values;
nothing reads files, git, a database or the clock.
"""
