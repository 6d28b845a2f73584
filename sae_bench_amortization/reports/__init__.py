"""What is read back from result files: the comparison table and plots, baseline checks (regress), training
dynamics, and the terminal summary."""
