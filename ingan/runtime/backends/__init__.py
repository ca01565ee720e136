"""Backends, imported only when chosen (each pulls in its own heavy package)."""
