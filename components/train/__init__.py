"""Training on Ray: TorchTrainer with DDP, checkpoints, early stopping, and Tune search."""
