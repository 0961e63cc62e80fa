"""The Redis backend: every queue and status step is one Lua script beside it."""
