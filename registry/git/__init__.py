"""Git: the only package that imports pygit2 or reads git's on-disk formats."""
