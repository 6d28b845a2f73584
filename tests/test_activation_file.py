"""The activation file format: streaming writer, chunked reader, validation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae_bench_amortization.activations.file import ActivationFile, ActivationFileWriter
from sae_bench_amortization.errors import InputError

from conftest import write_activations


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_writer_output_is_plain_safetensors(tmp_path, dtype):
    acts = torch.randn(1000, 7)
    concepts = torch.rand(1000, 3) > 0.5
    path = tmp_path / "a.safetensors"
    with ActivationFileWriter(path, 7, dtype=dtype, concept_names=["x", "y", "z"]) as writer:
        for start in range(0, 1000, 333):
            writer.write(acts[start : start + 333], concepts[start : start + 333])
    loaded = load_file(path)
    assert loaded["activations"].dtype == dtype
    torch.testing.assert_close(loaded["activations"], acts.to(dtype))
    assert torch.equal(loaded["concepts"], concepts)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        assert json.loads(handle.metadata()["concept_names"]) == ["x", "y", "z"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temporaries left


def test_reader_streams_chunks_equal_to_the_whole(tmp_path):
    acts = torch.randn(1001, 5)
    concepts = torch.randint(0, 2, (1001, 2), dtype=torch.uint8)
    save_file(
        {"activations": acts.half(), "concepts": concepts},
        tmp_path / "f.safetensors",
        {"concept_names": json.dumps(["a", "b"])},
    )
    file = ActivationFile(tmp_path / "f.safetensors")
    assert (file.n_tokens, file.d_in, file.concept_names) == (1001, 5, ["a", "b"])
    batches = list(file.iter_batches(300))
    assert [b.acts.shape[0] for b in batches] == [300, 300, 300, 101]
    assert all(b.acts.dtype == torch.float32 for b in batches)
    torch.testing.assert_close(torch.cat([b.acts for b in batches]), acts.half().float())
    assert torch.equal(torch.cat([b.concepts for b in batches]), concepts.bool())


def test_concept_names_default_when_metadata_absent(tmp_path):
    save_file(
        {"activations": torch.zeros(4, 2), "concepts": torch.zeros(4, 3, dtype=torch.bool)},
        tmp_path / "f.st",
    )
    assert ActivationFile(tmp_path / "f.st").concept_names == [
        "concept_0",
        "concept_1",
        "concept_2",
    ]


def bad_files(tmp_path):
    def save(name, tensors, metadata=None):
        save_file(tensors, tmp_path / name, metadata)
        return tmp_path / name

    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    truncated = save("trunc.safetensors", {"activations": torch.randn(100, 4)})
    truncated.write_bytes(truncated.read_bytes()[:-50])
    return {
        "missing": (tmp_path / "absent.safetensors", "not found"),
        "folder": (tmp_path, "not a file"),
        "garbage": (tmp_path / "garbage.safetensors", "not a readable safetensors file"),
        "truncated": (truncated, "not a readable safetensors file"),
        "no activations": (
            save("n.st", {"acts": torch.zeros(3, 2)}),
            "no tensor named 'activations'",
        ),
        "1-D": (save("d.st", {"activations": torch.zeros(3)}), "must be 2-D"),
        "int": (
            save("i.st", {"activations": torch.zeros(3, 2, dtype=torch.int32)}),
            "expected float16",
        ),
        "empty": (save("e.st", {"activations": torch.zeros(0, 4)}), "is empty"),
        "concept rows": (
            save("c.st", {"activations": torch.zeros(3, 2), "concepts": torch.zeros(4, 1)}),
            "'concepts' must have shape [3, C]",
        ),
        "concept dtype": (
            save("cd.st", {"activations": torch.zeros(3, 2), "concepts": torch.zeros(3, 1)}),
            "expected bool or integer",
        ),
        "names count": (
            save(
                "nc.st",
                {"activations": torch.zeros(3, 2), "concepts": torch.zeros(3, 2, dtype=torch.bool)},
                {"concept_names": json.dumps(["only one"])},
            ),
            "has 1 names but 'concepts' has 2 columns",
        ),
        "names json": (
            save(
                "nj.st",
                {"activations": torch.zeros(3, 2), "concepts": torch.zeros(3, 1, dtype=torch.bool)},
                {"concept_names": "[oops"},
            ),
            "not valid JSON",
        ),
    }


def test_each_bad_file_is_one_input_error(tmp_path):
    for case, (path, message) in bad_files(tmp_path).items():
        with pytest.raises(InputError) as info:
            ActivationFile(path)
        assert message in str(info.value), case
        assert "\n" not in str(info.value), case


def test_nonfinite_values_are_counted_and_located(tmp_path):
    acts = torch.randn(500, 6)
    acts[123, 4] = float("nan")
    acts[300, 0] = float("inf")
    acts[301, 1] = float("nan")
    path = write_activations(tmp_path / "nan.safetensors", acts)
    with pytest.raises(
        InputError, match=r"2 NaN and 1 Inf values; first at token 123, dimension 4"
    ):
        ActivationFile(path).check_finite(batch_size=100)


def test_writer_abort_leaves_target_untouched(tmp_path):
    path = write_activations(tmp_path / "keep.safetensors", torch.ones(3, 2))
    before = path.read_bytes()
    with pytest.raises(RuntimeError), ActivationFileWriter(path, 2) as writer:
        writer.write(torch.zeros(5, 2))
        raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.safetensors"]
