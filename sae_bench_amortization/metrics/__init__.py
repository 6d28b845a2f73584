"""Pure metric math over tensors: streaming accumulators, no file or model access."""
