"""The paper's numbers (data2vec, ICML 2022; see shared PAPER.md) as data, for the report's
comparison tables. All of them are paper scale: Base/Large models on the full datasets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperTable:
    label: str  # how the report names it, e.g. "Table 1"
    title: str
    modality: str
    metric: str  # the official metric name the runs log
    columns: tuple[str, ...]
    rows: dict[str, tuple[str, ...]]  # model -> cells ('' where the paper has none)


IMAGENET = PaperTable(
    label="Table 1",
    title="ImageNet-1k top-1 (%), fine-tuned",
    modality="vision",
    metric="top1",
    columns=("ViT-B", "ViT-L"),
    rows={
        "data2vec": ("84.2", "86.6"),
        "MAE": ("83.6", "85.9"),
        "MaskFeat": ("84.0", "85.7"),
        "BEiT": ("83.2", "85.2"),
        "SimMIM": ("83.8", ""),
        "MoCo v3": ("83.2", "84.1"),
        "DINO": ("82.8", ""),
    },
)

LIBRISPEECH = PaperTable(
    label="Table 2",
    title="LibriSpeech test-other WER (%), 4-gram LM, pretrained on LS-960",
    modality="speech",
    metric="wer",
    columns=("10 min", "1 h", "10 h", "100 h", "960 h"),
    rows={
        "data2vec Base": ("12.3", "9.1", "8.1", "6.8", "5.5"),
        "wav2vec 2.0 Base": ("15.6", "11.3", "9.5", "8.0", "6.1"),
        "HuBERT Base": ("15.3", "11.3", "9.4", "8.1", ""),
    },
)

GLUE = PaperTable(
    label="GLUE table",
    title="GLUE dev (MNLI acc m/mm, MRPC/QQP mean acc+F1, STS-B mean Pearson+Spearman, CoLA MCC)",
    modality="text",
    metric="glue",  # the per-task number the paper averages (d2v logs it as `glue`)
    columns=("MNLI m/mm", "QNLI", "RTE", "MRPC", "QQP", "STS-B", "CoLA", "SST-2", "avg"),
    rows={
        "BERT": ("84.0/84.4", "89.0", "61.0", "86.3", "89.1", "89.5", "57.3", "93.0", "80.7"),
        "RoBERTa (retrained baseline)": (
            "84.1/83.9",
            "90.4",
            "69.3",
            "89.0",
            "89.3",
            "88.9",
            "56.8",
            "92.3",
            "82.5",
        ),  # fmt: skip
        "data2vec": ("83.2/83.0", "90.9", "67.0", "90.2", "89.1", "87.2", "62.2", "91.8", "82.7"),
        "data2vec + span masking": (
            "82.8/83.4",
            "91.1",
            "69.9",
            "90.0",
            "89.0",
            "87.7",
            "60.3",
            "92.4",
            "82.9",
        ),  # fmt: skip
    },
)

TABLES = (IMAGENET, LIBRISPEECH, GLUE)


def column_for(table: PaperTable, task: str) -> int | None:
    """The paper column of a task (GLUE: "STS-B" for stsb, "MNLI m/mm" for mnli); tables whose
    columns are not tasks (model sizes, label budgets): 0; a GLUE task with no column: None."""
    key = "".join(ch for ch in task.lower() if ch.isalnum())
    for i, column in enumerate(table.columns):
        name = "".join(ch for ch in column.split(" ")[0].lower() if ch.isalnum())
        if name == key:
            return i
    return None if table.modality == "text" else 0


def table_for(modality: str) -> PaperTable | None:
    """The paper table a modality's results are placed beside, if the paper has one."""
    return next((t for t in TABLES if t.modality == modality), None)


@dataclass(frozen=True)
class DataScale:
    ours: str
    paper: str


# Data sources (the `data_source` / `dataset` tags) -> the scale beside the paper's.
DATA_SCALES = {
    "fashion_mnist": DataScale(
        "Fashion-MNIST: 60k train images, 28x28 grayscale, 10 classes",
        "ImageNet-1k: 1.28M train images, 224x224 RGB, 1000 classes",
    ),
    "imagenet": DataScale(
        "ImageNet-1k (local archives, size as configured)",
        "ImageNet-1k: 1.28M train images, 224x224 RGB, 1000 classes",
    ),
    "flite": DataScale(
        "flite-synthesized LibriSpeech-layout corpus: ~45 min of train audio, 28 pseudo-speakers",
        "LibriSpeech: 960 h (LS-960) pretraining; 10 min to 960 h labeled",
    ),
    "librispeech": DataScale(
        "LibriSpeech (OpenSLR 12, subsets as configured)",
        "LibriSpeech: 960 h (LS-960) pretraining; 10 min to 960 h labeled",
    ),
    "embedded": DataScale(
        "Bible (WEB + KJV) + WordNet examples, ~2M words; four GLUE-format stand-in tasks",
        "Books + English Wikipedia, ~3.3B words; the nine GLUE tasks",
    ),
    "glue": DataScale(
        "GLUE task archives + a local pretraining corpus (size as configured)",
        "Books + English Wikipedia, ~3.3B words; the nine GLUE tasks",
    ),
}


def data_scale(source: str) -> DataScale | None:
    return DATA_SCALES.get(source.replace("-", "_").lower())


# --- ablations (paper Figure 2 and Table 5), placed beside the ablation grids ---------------

# Table 5: speech Base, 10 h fine-tuning, dev-other WER without LM, per target sublayer.
TABLE5_WER = {"ffn": "13.1", "ffn_res": "14.8", "block": "14.5", "attn": "100 (unusable)"}
TABLE5_ORDER = ("ffn", "block", "ffn_res", "attn")  # best to worst
TABLE5_LABEL = "Table 5: speech Base, 10 h labeled, dev-other WER (no LM)"

# Figure 2: score against K (1..12) per modality; the paper prints curves, not numbers.
FIGURE2_CLAIM = (
    "Figure 2: averaging the top K layers beats K = 1 in every modality "
    "(strongly for speech and text, slightly for vision)"
)
NORM_CLAIM = "normalizing each target layer matters; speech without it collapses (section 5.3)"
