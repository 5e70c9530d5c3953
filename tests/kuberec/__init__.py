"""Specifications of the kuberec command (kuberec/cli*.py) as users run it."""
