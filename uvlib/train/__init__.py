"""Training: one step-based loop with checkpoints and exact resume (loop), a trainer per model kind (trainers),
torchrun / DistributedDataParallel support (distributed),
losses, batches and hole banks (batches), the original study's autoencoder loop (autoencoder), cross-fitting
of stacked stages (crossfit), the PCA ridge choice on validation maps (pca_ridge) and run records (provenance)."""
