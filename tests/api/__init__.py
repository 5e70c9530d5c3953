"""Specifications of the job contract (kuberec/api/): its place below every layer, its names."""
