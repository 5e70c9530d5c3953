"""The BentoML service, retrieval index and canary analysis.

Built by the Serving issue; nothing here yet.
"""
