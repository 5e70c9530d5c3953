"""Specifications of the Helm chart under helm/kuberec."""
