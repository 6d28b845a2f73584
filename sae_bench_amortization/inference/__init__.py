"""How codes are inferred on an SAE's fixed decoder: amortized, semi-amortized (ISTA/FISTA steps from the
encoder output) and non-amortized (sparse coding to tolerance), plus the λ calibration."""
