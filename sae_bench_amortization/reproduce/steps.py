"""The steps of a reproduction: ``saebench`` command lines run in order, each resumable.

Every step is a command a user could type (``saebench reproduce --dry-run`` prints them). The reproduction
folder holds ``reproduce.json``: per step its command, a signature (SHA-256 of the command and of the
digests of the files earlier steps wrote that it reads), whether it finished, and digests of what it wrote.
A step whose signature and outputs are unchanged is skipped; a started, unfinished step is redone over its
own partial output; an output the manifest does not know, or one changed since, is never replaced.
Evaluation steps (``run``, ``dynamics``) always run: their result files carry their own fingerprints and
the runner skips those still valid (:mod:`sae_bench_amortization.runner.fingerprint`)."""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sae_bench_amortization.atomic import write_json_atomic
from sae_bench_amortization.digest import path_digest
from sae_bench_amortization.errors import InputError

MANIFEST = "reproduce.json"


@dataclass(frozen=True)
class Step:
    """One ``saebench`` command of a reproduction.

    ``argv``: the command line without ``saebench``; ``outputs``: the paths it writes (relative to the
    reproduction folder); ``inputs``: outputs of earlier steps it reads; ``evaluates``: a ``run`` /
    ``dynamics`` step, which resumes itself result by result."""

    name: str
    argv: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    evaluates: bool = False

    def command(self) -> str:
        return shlex.join(["saebench", *self.argv])


@dataclass
class Manifest:
    """``reproduce.json``: the steps done (or started) in one reproduction folder."""

    folder: Path
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # target → settings, choices, times

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            return cls(folder)
        try:
            data = json.loads(path.read_text())
            return cls(folder, dict(data["steps"]), dict(data.get("targets", {})))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is not a reproduction manifest ({type(exc).__name__}); "
                             "choose another --out") from None  # fmt: skip

    def write(self) -> None:
        write_json_atomic(self.folder / MANIFEST, {"steps": self.steps, "targets": self.targets})

    def digest_of(self, output: str) -> str | None:
        """The recorded digest of an earlier step's output."""
        for record in self.steps.values():
            if output in record.get("outputs", {}):
                return record["outputs"][output]
        return None


def signature(step: Step, manifest: Manifest) -> str:
    """SHA-256 of the command and of the recorded digests of the inputs it reads."""
    inputs = {name: manifest.digest_of(name) for name in step.inputs}
    return hashlib.sha256(json.dumps([step.argv, inputs], sort_keys=True).encode()).hexdigest()


def plan_steps(
    steps: Sequence[Step], manifest: Manifest, strict: bool = True
) -> list[tuple[Step, str]]:
    """Each step and what will happen to it: 'up to date', 'redo' (its own unfinished output), 'run';
    one line (InputError) for an output that is not the reproduction's own, or that changed since it was
    written, before anything runs (not ``strict``: 'refused: <why>' in its place, for ``--dry-run``)."""
    planned = []
    for step in steps:
        try:
            planned.append((step, _action(step, manifest)))
        except InputError as exc:
            if strict:
                raise
            planned.append((step, f"refused: {exc}"))
    return planned


def _action(step: Step, manifest: Manifest) -> str:
    """What :func:`plan_steps` does with one step (InputError: refused)."""
    record = manifest.steps.get(step.name)
    present = [out for out in step.outputs if (manifest.folder / out).exists()]
    if not present:
        return "run"
    where = manifest.folder / present[0]
    if record is None:
        raise InputError(f"{where} exists but was not written by this reproduction "
                         f"(no entry in {manifest.folder / MANIFEST}): move it or choose another --out")  # fmt: skip
    if step.evaluates:
        return "run"
    if record.get("state") != "done":
        return "redo"
    if record.get("signature") != signature(step, manifest) or len(present) < len(step.outputs):
        raise InputError(f"step '{step.name}' was made with other settings or inputs "
                         f"({record.get('command')}); choose another --out, or remove {where} to redo it")  # fmt: skip
    changed = [out for out in step.outputs
               if path_digest(manifest.folder / out) != record["outputs"].get(out)]  # fmt: skip
    if changed:
        raise InputError(f"{manifest.folder / changed[0]} changed since step '{step.name}' wrote it; "
                         "choose another --out, or remove it to redo the step")  # fmt: skip
    return "up to date"


def run_steps(
    planned: Sequence[tuple[Step, str]],
    manifest: Manifest,
    execute: Callable[[Sequence[str]], Any],
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Run the planned steps in order (``execute``: one ``saebench`` command line); returns each step's
    seconds (0 for one up to date). The manifest is written before and after every step."""
    seconds = {}
    for step, action in planned:
        if action == "up to date":
            say(f"[{step.name}] up to date: {step.command()}")
            seconds[step.name] = 0.0
            continue
        argv = [*step.argv, "--overwrite"] if action == "redo" or _own_summary(step, manifest) else list(step.argv)  # fmt: skip
        say(f"[{step.name}] {shlex.join(['saebench', *argv])}")
        manifest.steps[step.name] = {"command": step.command(), "signature": signature(step, manifest),
                                     "state": "started", "outputs": {}}  # fmt: skip
        manifest.write()
        start = time.perf_counter()
        execute(argv)
        seconds[step.name] = time.perf_counter() - start
        outputs = (
            {}
            if step.evaluates
            else {out: path_digest(manifest.folder / out) for out in step.outputs}
        )
        manifest.steps[step.name].update(
            state="done", outputs=outputs, seconds=round(seconds[step.name], 1)
        )
        manifest.write()
    return seconds


def _own_summary(step: Step, manifest: Manifest) -> bool:
    """An evaluation step whose summary files (``dynamics.csv``, ``summary.csv``) this reproduction wrote
    before: replaced, as they are derived from the results beside them."""
    record = manifest.steps.get(step.name)
    return bool(step.evaluates and record is not None and step.argv[0] in ("dynamics", "compare")
                and any((manifest.folder / out).exists() for out in step.outputs))  # fmt: skip
