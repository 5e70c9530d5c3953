"""Specifications of the kuberec command (kuberec/cli/) as users run it."""
