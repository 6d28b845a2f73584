"""``saebench reproduce``: resumable steps (on stand-in commands) and its bad input, in this process.

The end-to-end runs of every target (``--scale smoke``, offline, against the test Hugging Face cache) are
the README's own reproduce commands: ``tests/test_readme_commands.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.reproduce import SCALES, TARGET_NAMES
from sae_bench_amortization.reproduce.steps import MANIFEST, Manifest, Step, plan_steps, run_steps

from conftest import assert_one_line_error


class FakeSaebench:
    """Stands in for ``saebench``: writes each step's outputs (their content: the command), records calls."""

    def __init__(self, folder: Path, steps: list[Step]):
        self.folder, self.by_argv, self.calls = folder, {}, []
        for step in steps:
            self.by_argv[step.argv] = step

    def __call__(self, argv):
        self.calls.append(list(argv))
        step = self.by_argv[tuple(a for a in argv if a != "--overwrite")]
        for out in step.outputs:
            (self.folder / out).write_text(" ".join(step.argv))


def chain(folder: Path, lr: str = "1e-3") -> list[Step]:
    return [
        Step("acts", ("activations", "--out", str(folder / "a.bin")), ("a.bin",)),
        Step("train", ("train", "--lr", lr, "--out", str(folder / "sae")), ("sae",), ("a.bin",)),
        Step(
            "evaluate",
            ("run", "--output-dir", str(folder / "res")),
            ("res",),
            ("sae",),
            evaluates=True,
        ),
    ]


def run_chain(folder: Path, steps: list[Step]) -> tuple[FakeSaebench, list[tuple[Step, str]]]:
    manifest = Manifest.read(folder)
    planned = plan_steps(steps, manifest)
    fake = FakeSaebench(folder, steps)
    run_steps(planned, manifest, fake, say=lambda _: None)
    return fake, planned


def test_a_finished_chain_is_up_to_date_and_only_the_evaluation_reruns(tmp_path):
    steps = chain(tmp_path)
    fake, planned = run_chain(tmp_path, steps)
    assert [action for _, action in planned] == ["run", "run", "run"]
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert all(record["state"] == "done" for record in manifest["steps"].values())
    assert set(manifest["steps"]["train"]["outputs"]) == {"sae"}
    again, planned = run_chain(tmp_path, steps)
    assert [action for _, action in planned] == ["up to date", "up to date", "run"]
    assert [call[0] for call in again.calls] == [
        "run"
    ]  # results resume themselves, result by result


def test_an_interrupted_step_is_redone_over_its_own_output(tmp_path):
    steps = chain(tmp_path)
    run_chain(tmp_path, steps)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["steps"]["train"]["state"] = "started"  # killed while training
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    fake, planned = run_chain(tmp_path, steps)
    assert [action for _, action in planned] == ["up to date", "redo", "run"]
    assert fake.calls[0][-1] == "--overwrite" and fake.calls[0][0] == "train"


def test_another_setting_a_changed_output_or_a_foreign_file_is_refused_before_anything_runs(
    tmp_path,
):
    steps = chain(tmp_path)
    run_chain(tmp_path, steps)
    before = (tmp_path / MANIFEST).read_text()
    with pytest.raises(InputError, match="step 'train' was made with other settings"):
        plan_steps(chain(tmp_path, lr="3e-4"), Manifest.read(tmp_path))
    (tmp_path / "a.bin").write_text("edited by hand")
    with pytest.raises(InputError, match="a.bin changed since step 'acts' wrote it"):
        plan_steps(steps, Manifest.read(tmp_path))
    assert (tmp_path / MANIFEST).read_text() == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "sae").write_text("the user's own SAE")
    with pytest.raises(InputError, match="exists but was not written by this reproduction"):
        plan_steps(chain(fresh), Manifest.read(fresh))
    dry = plan_steps(
        chain(fresh), Manifest.read(fresh), strict=False
    )  # --dry-run says it, raises nothing
    assert [action.split(":")[0] for _, action in dry] == ["run", "refused", "run"]
    assert (fresh / "sae").read_text() == "the user's own SAE"


def test_the_names_the_cli_lists_are_the_targets():
    from sae_bench_amortization.reproduce.run import TARGETS
    from sae_bench_amortization.reproduce.targets import SCALES as TARGET_SCALES

    assert tuple(TARGETS) == TARGET_NAMES and SCALES == TARGET_SCALES == ("paper", "smoke")


def test_dry_run_prints_each_targets_commands_and_writes_nothing(cli, tmp_path):
    for target in TARGET_NAMES:
        result = cli("reproduce", target, "--dry-run", "--out", tmp_path / "r")
        assert result.code == 0, result.err
        assert all(": saebench " in line for line in result.out.strip().splitlines())
    assert "--protocol paper" in result.out and not (tmp_path / "r").exists()
    paper = cli("reproduce", "pythia-topk", "--dry-run").out
    assert (
        "--n-tokens 10000000" in paper and "blocks.7.hook_resid_post" in paper
    )  # the authors' values
    assert "--n-tokens 102400000" in paper and "--group-k 6,5,4,3,3,2,2,1" in paper


BAD = {
    "an unknown target": (["reproduce", "pythia-70m"], ["unknown target 'pythia-70m'", "pythia-topk"]),
    "an unknown scale": (["reproduce", "pythia-topk", "--scale", "tiny"], ["unknown --scale 'tiny'"]),
    "a flag the target does not read": (["reproduce", "gemma-jumprelu", "--layer", "3"],
                                        ["--layer applies to the targets that train"]),
    "--activations for a target that trains": (["reproduce", "pythia-topk", "--activations", "x.safetensors"],
                                               ["--activations applies to the targets that evaluate"]),
    "a negative layer": (["reproduce", "pythia-topk", "--layer", "-1"], ["--layer must be >= 0"]),
    "--dataset and --text-file": (["reproduce", "pythia-topk", "--dataset", "d", "--text-file", "t"],
                                  ["--dataset or --text-file, not both"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    argv, fragments = BAD[case]
    assert_one_line_error(cli(*argv, "--out", tmp_path / "out"), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_out_folder_of_the_users_is_refused(cli, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = cli("reproduce", "pythia-topk", "--scale", "smoke", "--out", tmp_path / "mine")
    assert_one_line_error(result, "holds files not written by saebench reproduce")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.fixture
def empty_offline_cache(tmp_path, monkeypatch):
    """No network, and a Hugging Face cache that holds nothing."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for name in ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)


def test_offline_a_missing_model_or_sae_is_one_line_naming_the_download(
    cli, tmp_path, empty_offline_cache
):
    result = cli("reproduce", "pythia-topk", "--scale", "smoke", "--out", tmp_path / "a")
    assert_one_line_error(result, "model pythia-160m-deduped is not in the local Hugging Face cache",
                          "hf download EleutherAI/pythia-160m-deduped")  # fmt: skip
    result = cli("reproduce", "gemma-jumprelu", "--scale", "smoke", "--out", tmp_path / "b",
                 "--activations", tmp_path / "acts.safetensors")  # fmt: skip
    assert_one_line_error(result, "SAE gemma-scope-2b-pt-res-canonical / layer_12/width_16k/canonical",
                          "hf download google/gemma-scope-2b-pt-res --include 'layer_12/width_16k/average_l0_82/*'")  # fmt: skip
    result = cli("reproduce", "gated-pattern", "--scale", "smoke", "--out", tmp_path / "c",
                 "--text-file", tmp_path / "t.txt")  # fmt: skip
    assert_one_line_error(
        result, "SAE sae_bench_pythia70m_sweep_gated_ctx128_0730", "hf download canrager/lm_sae"
    )
    assert not any((tmp_path / name).exists() for name in "abc")
