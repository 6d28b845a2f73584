"""Register this package's SAE architectures with SAE-Lens as soon as both are imported.

SAE-Lens takes seconds to import, and ``saebench list`` or a bad flag should not wait for it. So
importing ``sae_bench_amortization`` registers at once when ``sae_lens`` is already imported, and
otherwise right after ``sae_lens`` finishes importing (a one-shot post-import hook on ``sys.meta_path``).
Either way, ``SAE.load_from_disk`` on an ``"ista_refined"`` folder works after ``import sae_bench_amortization``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys


def register_now() -> None:
    adapters = sys.modules.get("sae_bench_amortization.adapters")
    if adapters is not None and not hasattr(adapters, "register"):
        return  # the adapters are importing (they imported sae_lens): their __init__ registers at its end
    from sae_bench_amortization.adapters import register

    register()


class _AfterSaeLensImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "sae_lens":
            return None
        sys.meta_path.remove(self)  # one shot; let the normal finders locate sae_lens
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            register_now()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def register_when_ready() -> None:
    if "sae_lens" in sys.modules:
        register_now()
    elif not any(isinstance(finder, _AfterSaeLensImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterSaeLensImport())
