"""This package's evals, one folder each (eval_config / eval_output / main), registered by entry point."""
