"""The Feast feature repo: entities, sources, feature views and services, store profiles."""
