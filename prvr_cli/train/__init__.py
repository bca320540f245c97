"""Training: one epoch and the uncertainty pass (epoch), the trainer state (state), the resume checks
(resume), the data a run reads (dataset), checkpoints, fit(), and train_run() behind `prvr train`."""
