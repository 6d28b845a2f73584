"""LocA-SAE, everything but the SAE class itself (``adapters/loca.py``): angular variance over a token stream
(:mod:`.angular`), groups, budgets and initial encoders (:mod:`.grouping`), fine-tuning (:mod:`.training`)."""
