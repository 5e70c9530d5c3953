"""Tests of components/: the pipeline's steps, one folder per component."""
