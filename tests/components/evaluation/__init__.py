"""Specifications of components/evaluation: offline metrics and split protocols."""
