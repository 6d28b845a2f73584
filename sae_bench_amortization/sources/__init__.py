"""Where SAEs come from (SAE-Lens releases, saved folders, dictionary_learning checkpoints), and how a run
names its SAEs and its activation source."""
