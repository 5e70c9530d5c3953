"""Specifications of components/models: the model types, their data and persistence."""
