"""procreg for agents: MCP over stdio and streamable HTTP, tool definitions, tokens.

``tools`` is pure (metadata to tool definitions); ``catalog`` reads the served set
from the index; ``mcp`` is the server on the official SDK; ``http`` the ASGI app
with token auth; ``tokens`` the rights model.
"""
