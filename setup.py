"""Package discovery; everything else about the distribution is in pyproject.toml.

adapters/ and evals/ sit at the repository's top level but install inside the package, as
sae_bench_amortization.adapters and sae_bench_amortization.evals (never as top-level modules: both
names are taken on PyPI). Every folder under the three roots is found here, so a new eval or
sub-package cannot be left out of the wheel. (The links sae_bench_amortization/adapters and
sae_bench_amortization/evals show the same layout to pyright and editors; the wheel is the same with them.)
"""

import shutil
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# installed package name -> folder in this repository
ROOTS = {
    "sae_bench_amortization": "sae_bench_amortization",
    "sae_bench_amortization.adapters": "adapters",
    "sae_bench_amortization.evals": "evals",
}


def _is_package_name(dotted: str) -> bool:
    """Only importable folder names: no __pycache__, no .hidden, no data-like folder names."""
    return all(part.isidentifier() and part != "__pycache__" for part in dotted.split("."))


def discover_packages() -> list[str]:
    packages: set[str] = set()
    for root, folder in ROOTS.items():
        packages.add(root)
        found = find_namespace_packages(where=str(HERE / folder), exclude=["*__pycache__*"])
        packages.update(f"{root}.{sub}" for sub in found if _is_package_name(sub))
    return sorted(packages)


class FreshBuildPy(build_py):
    """Start from an empty build/lib: a module moved or deleted here never ships from an old build.

    pip builds wheels in the tree, and setuptools only adds to build/lib, never removes from it.
    """

    def run(self):
        build_lib = Path(self.build_lib).resolve()
        if not self.editable_mode and build_lib.is_relative_to(HERE / "build"):
            shutil.rmtree(build_lib, ignore_errors=True)
        super().run()


setup(
    package_dir=ROOTS,
    packages=discover_packages(),
    cmdclass={"build_py": FreshBuildPy},
)
