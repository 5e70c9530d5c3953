"""Pipeline building blocks: datasets, features (Feast), models, training, evaluation."""
