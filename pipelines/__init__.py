"""The KFP v2 training pipeline: ingest -> features -> train -> evaluate -> package.

Built by the Pipeline issue; nothing here yet.
"""
