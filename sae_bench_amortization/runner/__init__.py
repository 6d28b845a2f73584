"""The one loop every eval runs in (skip finished results, lock, evaluate, write atomically), the result
files, and the executors (sequential, Ray)."""
