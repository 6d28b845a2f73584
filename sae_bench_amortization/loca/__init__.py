"""LocA-SAE fine-tuning (:mod:`.training`). The SAE class is ``adapters/loca.py``, how one is made from a
pretrained SAE (angular variance, groups, budgets, starting encoders) ``adapters/loca_grouping.py``, the
angular-variance accumulator ``metrics/angular.py``: loca/ builds on adapters/, never the reverse."""
