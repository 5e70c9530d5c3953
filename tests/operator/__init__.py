"""Specifications of operator/: the spec, the CRD, reconcile and both platforms."""
