"""Specifications of components/train: training runs, auto, Tune, Ray clusters."""
