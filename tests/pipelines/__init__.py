"""Specifications of pipelines/: compiling, running locally, submitting to KFP."""
