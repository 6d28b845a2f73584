"""How ``saebench run`` executes its (SAE × eval) work: in this process, one after another (the default), or
as Ray tasks across the GPUs and machines of a Ray cluster (``--executor ray``, the ``[ray]`` extra).

Every task runs the same code as the sequential path — the eval's registry entry on a request holding one
SAE — and writes its result file atomically into the shared output folder, so results do not depend on the
executor, a failed task costs only its own results, and re-running skips what is finished.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch

from sae_bench_amortization.errors import InputError, first_line
from sae_bench_amortization.registry import EvalEntry, discover_evals
from sae_bench_amortization.runner.loop import run_entry
from sae_bench_amortization.runner.memory import bound_the_heap
from sae_bench_amortization.runner.plan import plan_command
from sae_bench_amortization.runner.request import ActivationFactory, EvalRequest, SAEOutcome

Executor = Literal["sequential", "ray"]
EXECUTORS: tuple[Executor, ...] = ("sequential", "ray")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: a cluster named by RAY_ADDRESS, else a local Ray instance
    gpus_per_task: float = 0.0
    cpus_per_task: float = 1.0
    device: str | None = None  # --device; None: cuda when the task holds a GPU, else cpu

    @classmethod
    def for_executor(
        cls,
        executor: str,
        address: str | None,
        gpus_per_task: float,
        cpus_per_task: float,
        device: str | None,
    ) -> RayOptions:
        """The options of ``executor``; Ray settings without Ray are refused."""
        options = cls(address, gpus_per_task, cpus_per_task, device)
        if executor != "ray" and options != cls(device=options.device):
            raise InputError(
                "--ray-address, --gpus-per-task and --cpus-per-task go with --executor ray"
            )
        return options

    def __post_init__(self) -> None:
        if not (self.gpus_per_task >= 0 and self.cpus_per_task > 0):
            raise InputError(
                f"--gpus-per-task must be >= 0 and --cpus-per-task > 0, got {self.gpus_per_task} and "
                f"{self.cpus_per_task}"
            )


def run_sequential(entries: list[EvalEntry], request: EvalRequest) -> list[tuple[str, SAEOutcome]]:
    """Each eval on all SAEs, in this process; the whole command is checked first (bad input stops it with
    one line before anything is written)."""
    plan = plan_command(entries, request)
    rows = []
    for entry in entries:
        rows.extend((entry.name, outcome) for outcome in run_entry(entry, request, plan=plan))
    return rows


# ------------------------------------------------------------------------------ Ray

# per Ray worker process: activation factories by object id
_WORKER_FACTORIES: dict[str, ActivationFactory] = {}


def _factory_in_worker(boxed_ref: list[Any]) -> ActivationFactory:
    """The activation factory behind an object ref, deserialized once per worker process, so the tasks a
    worker runs share it (and the model it loaded, for a TransformerLens or HF source)."""
    import ray

    (ref,) = boxed_ref  # boxed: a bare ref argument would be resolved (copied) for every task
    key = ref.hex()
    if key not in _WORKER_FACTORIES:
        _WORKER_FACTORIES.clear()  # one source (and model) in memory per worker
        _WORKER_FACTORIES[key] = ray.get(ref)
    return _WORKER_FACTORIES[key]


def _run_task(eval_name: str, request: EvalRequest, boxed_factory: list[Any]) -> list[SAEOutcome]:
    """One (SAE × eval) on a Ray worker: the registered eval on a request holding that one SAE."""
    bound_the_heap()
    threads = int(float(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    if threads > 0:
        torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS to the task's CPUs
    device = request.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    factory = _factory_in_worker(boxed_factory)
    if getattr(factory, "device", device) != device:  # read models on the task's device (its GPU)
        setattr(factory, "device", device)  # noqa: B010 - only a model's factory has a device
    request = dataclasses.replace(request, activations=factory, device=device)
    return run_entry(discover_evals()[eval_name], request)


def run_ray(
    entries: list[EvalEntry], request: EvalRequest, options: RayOptions
) -> tuple[list[tuple[str, SAEOutcome]], list[str]]:
    """Each (SAE × eval) as a Ray task; a failing task is reported as ``failed`` and the others complete.
    Returns the summary rows and the messages of the tasks that failed on bad input (InputError)."""
    try:
        import ray
    except ImportError:
        raise InputError(
            "--executor ray needs Ray: pip install 'sae-bench-amortization[ray]'"
        ) from None
    # the whole command is checked before any task; the workers then load their own models
    plan_command(entries, dataclasses.replace(request, device="cpu"))
    unload = getattr(request.activations, "unload", None)
    if unload is not None:  # no loaded model travels in the object store
        unload()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=options.address,
                include_dashboard=False,
                log_to_driver=True,
                logging_level=logging.WARNING,
                configure_logging=True,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = options.address or os.environ.get("RAY_ADDRESS") or "a local Ray instance"
            raise InputError(f"cannot start or reach Ray at {where}: {first_line(exc)}") from None
    try:
        remote = ray.remote(_run_task).options(
            num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task, max_retries=0
        )
        factory = [ray.put(request.activations)]
        device = options.device or ("auto" if options.gpus_per_task > 0 else "cpu")
        tasks = []
        for entry in entries:
            for spec in request.saes:
                one = dataclasses.replace(request, saes=[spec], activations=None, device=device)
                tasks.append((entry.name, spec, remote.remote(entry.name, one, factory)))
        rows, bad_input = [], []
        for eval_name, spec, future in tasks:
            try:
                rows.extend((eval_name, outcome) for outcome in ray.get(future))
            except Exception as exc:  # noqa: BLE001 - a task's failure is reported, the others go on
                cause = getattr(exc, "cause", None) or exc
                if isinstance(cause, InputError):
                    bad_input.append(f"{eval_name} on {spec.sae_name}: {cause}")
                status = f"failed: {type(cause).__name__}: {first_line(cause)}"
                rows.append((eval_name, SAEOutcome(spec.sae_name, status)))
        return rows, bad_input
    finally:
        if started_here:
            ray.shutdown()
