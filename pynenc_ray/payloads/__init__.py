"""Large arguments and results kept outside the backend: the payload store.

With ``payload_store_url`` set, an argument or a result whose serialized form
is over ``payload_inline_max_bytes`` is written to a filesystem or an object
store (any fsspec URL) under its content hash, and the record keeps a
reference (``refs.PayloadRef``); readers fetch it once per process and check
its hash. ``offload.py`` decides what goes where; ``store.py`` reads and
writes the objects. fsspec is imported only when a store is configured.
"""
