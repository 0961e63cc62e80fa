"""The embedded SQLite backend: one database file that every process of one
machine shares, with no server (``backend = "sqlite"``, ``sqlite_path``).

``schema`` holds the tables and how a connection is opened and its errors told;
``backend`` the moves of an invocation, each one write transaction."""
