"""SAE-Lens ``SAE`` subclasses that change how codes are inferred (ISTA-refined, LocA).

Importing ``sae_bench_amortization`` registers them with ``sae_lens.registry``.
"""
