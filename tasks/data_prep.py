"""Data preparation: real datasets that ship offline, as versioned parquet splits.

Datasets:
    * ``digits`` - scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes),
      pixel values scaled to [0, 1].
    * ``mnist1d`` - the mnist1d generator (Greydanus 2020): 1-D, 40-sample signals of
      10 digit templates with shift/scale/shear and noise. Generated locally from the
      package's templates (``make_dataset``), never downloaded. ``noise_scale`` multiplies
      both noise terms, giving harder variants where digits saturates.
    * ``breast_cancer`` - scikit-learn's Wisconsin breast cancer table (569 x 30, 2 classes),
      standardised with train-split statistics.

Every split is a table with the schema of :func:`split_schema`:
``id`` (int64, stable item id across splits), ``label`` (int64) and ``x``
(fixed_size_list<float32>[d]).
"""

from __future__ import annotations

import importlib
import inspect
import math
import unicodedata
import warnings
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.charlm import ALPHABET
from tasks.platform.artifacts import check_schema
from tasks.platform.errors import ArtifactError
from tasks.platform.params import Limit, Seed

DATASETS = ("digits", "mnist1d", "breast_cancer")
FEATURES = {"digits": 64, "mnist1d": 40, "breast_cancer": 30}  # input width of each dataset
CLASSES = {"digits": 10, "mnist1d": 10, "breast_cancer": 2}
SIZES = {"digits": 1797, "breast_cancer": 569}  # rows before max_samples (mnist1d: num_samples)
SPLITS = ("train", "val", "test")


class DataParams(BaseModel):
    """Params of the ``prepare`` stage.

    Attributes:
        dataset: one of ``digits``, ``mnist1d``, ``breast_cancer``.
        val_fraction: fraction of all samples held out for validation.
        test_fraction: fraction of all samples held out for testing.
        seed: seed of the split permutation (and of the mnist1d generator).
        num_samples: mnist1d only: number of samples generated.
        noise_scale: mnist1d only: multiplier on the generator's noise (1.0 = default).
        max_samples: keep at most this many samples before splitting (tiny profiles).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal["digits", "mnist1d", "breast_cancer"] = "digits"
    val_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    seed: Seed = 0
    num_samples: Annotated[int, Field(ge=100), Limit("samples")] = 5000
    noise_scale: float = Field(default=1.0, ge=0.0)
    max_samples: int | None = Field(default=None, ge=30)

    def num_features(self) -> int:
        return FEATURES[self.dataset]

    @model_validator(mode="after")
    def _fractions(self):
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} leaves "
                "under 10% for training"
            )
        # The stratified splits need every class in each of val and test: ask for >= 2 rows
        # per class on average in the smaller one (sklearn fails below about one per class).
        n = SIZES.get(self.dataset, self.num_samples)
        n = min(n, self.max_samples) if self.max_samples is not None else n
        smallest = min(self.val_fraction, self.test_fraction)
        need = math.ceil(2 * CLASSES[self.dataset] / smallest)
        if n < need:
            key = "max_samples" if self.max_samples is not None and self.max_samples <= n else "num_samples"
            raise ValueError(
                f"{key} = {n}: too few rows to split {self.dataset} ({CLASSES[self.dataset]} classes) "
                f"with a {smallest:g} val/test fraction; need >= {need} (2 per class in the smaller split)"
            )
        return self


def split_schema(d: int) -> pa.Schema:
    """Schema of one split with ``d`` features."""
    return pa.schema(
        [("id", pa.int64()), ("label", pa.int64()), ("x", pa.list_(pa.float32(), d))]
    )


def split_schema_check(table: pa.Table, where: str) -> None:
    """Schema check of a split table of any width: ``id``, ``label``, ``x`` list<float32>[d]."""
    x = table.schema.field("x").type if "x" in table.schema.names else None
    if not isinstance(x, pa.FixedSizeListType):
        raise ArtifactError(f"schema mismatch in {where}: column 'x' must be fixed_size_list<float32>, got {x}")
    check_schema(table, split_schema(x.list_size), where)


def _load(p: DataParams) -> tuple[np.ndarray, np.ndarray]:
    """Return X (n, d) float32 and y (n,) int64 of the raw dataset."""
    if p.dataset == "digits":
        from sklearn.datasets import load_digits

        ds = load_digits()
        return (ds.data / 16.0).astype(np.float32), ds.target.astype(np.int64)
    if p.dataset == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        ds = load_breast_cancer()
        return ds.data.astype(np.float32), ds.target.astype(np.int64)
    import mnist1d.data as m1d

    args = m1d.get_dataset_args()
    args.num_samples = p.num_samples
    args.seed = p.seed
    args.corr_noise_scale *= p.noise_scale
    args.iid_noise_scale *= p.noise_scale
    # NOTE: make_dataset generates from the templates bundled in the package (no download);
    # we pool its own train/test split and re-split below so every dataset is split alike.
    data = m1d.make_dataset(args)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


def make_table(ids: np.ndarray, x: np.ndarray, y: np.ndarray) -> pa.Table:
    """Build a split table from ids (n,), X (n, d) float32, labels (n,)."""
    d = x.shape[1]
    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))
    col = pa.FixedSizeListArray.from_arrays(flat, d)
    return pa.Table.from_arrays(
        [pa.array(ids.astype(np.int64)), pa.array(y.astype(np.int64)), col], schema=split_schema(d)
    )


def prepare(params: DataParams) -> dict[str, pa.Table]:
    """Load ``params.dataset`` and split it (stratified, seeded) into train/val/test tables."""
    from sklearn.model_selection import train_test_split

    x, y = _load(params)
    ids = np.arange(len(y))
    if params.max_samples is not None and params.max_samples < len(y):
        ids, _ = train_test_split(
            ids, train_size=params.max_samples, stratify=y, random_state=params.seed
        )
        ids = np.sort(ids)
    holdout = params.val_fraction + params.test_fraction
    train_ids, rest = train_test_split(ids, test_size=holdout, stratify=y[ids], random_state=params.seed)
    val_ids, test_ids = train_test_split(
        rest, test_size=params.test_fraction / holdout, stratify=y[rest], random_state=params.seed
    )
    train_ids, val_ids, test_ids = np.sort(train_ids), np.sort(val_ids), np.sort(test_ids)
    if params.dataset == "breast_cancer":
        # Standardise with train statistics only (no test leakage).
        mu, sd = x[train_ids].mean(0), x[train_ids].std(0) + 1e-8
        x = ((x - mu) / sd).astype(np.float32)
    return {
        name: make_table(i, x[i], y[i])
        for name, i in zip(SPLITS, (train_ids, val_ids, test_ids))
    }


def table_to_tensors(table: pa.Table) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split table -> (X float32 (n, d), y int64 (n,), ids int64 (n,)); checks the schema."""
    names = table.schema.names
    if names != ["id", "label", "x"]:
        raise ArtifactError(f"not a split table: columns {names}, expected ['id', 'label', 'x']")
    xcol = table.column("x").combine_chunks()
    d = xcol.type.list_size
    x = xcol.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)
    y = table.column("label").to_numpy()
    ids = table.column("id").to_numpy()
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy()), torch.from_numpy(ids.copy())


def num_features(table: pa.Table) -> int:
    return table.schema.field("x").type.list_size


# ---------------------------------------------------------------------------------------
# the character corpus (read by tasks.audit.text_detect and tasks.quant.tinylm)
# ---------------------------------------------------------------------------------------

STDLIB_MODULES = (
    "argparse", "bisect", "collections", "csv", "datetime", "functools", "heapq", "itertools",
    "json", "logging", "os", "pathlib", "random", "re", "shutil", "statistics", "string",
    "subprocess", "textwrap", "typing",
)

_ASCII = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2026": "..."}


def clean_text(text: str) -> str:
    text = "".join(_ASCII.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if c in ALPHABET)


def corpus_text() -> str:
    """All source text: pydoc topics (sorted by key) + stdlib docstrings, ASCII-cleaned."""
    import pydoc_data.topics as topics

    parts = [topics.topics[k] for k in sorted(topics.topics)]
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # e.g. typing.io / typing.re attributes
        for name in STDLIB_MODULES:
            mod = importlib.import_module(name)
            members = [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]
            for obj in [mod, *members]:
                doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or callable(obj)) else None
                if doc and doc not in seen:
                    seen.add(doc)
                    parts.append(doc)
    return clean_text("\n\n".join(parts))
