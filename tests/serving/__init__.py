"""Specifications of serving/: the engine, the HTTP service and its processes."""
