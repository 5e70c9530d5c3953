"""The job contract: the ``RecommenderJob`` spec, its status and their camelCase mapping.

The lowest layer: components, pipelines, serving, the operator and the CLI import it, and it
imports none of them. What it needs from above (the model types and their rules, which live
beside the models) reaches it through :mod:`kuberec.api.model_types`.
"""
