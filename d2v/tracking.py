"""MLflow: the one place that opens runs and logs params, metrics, artifacts and models, and
registers the best pretrained encoder per modality. (The report reads the store through
`d2v.report.sources`, the one reader.)

Default store `sqlite:///mlruns.db` in the working directory (MLflow's own default since 3.x);
`MLFLOW_TRACKING_URI` overrides the param. Artifacts go to `mlartifacts/` beside the database
for a sqlite store; MLflow stores that location as an absolute path, so a store whose clone was
moved or copied is pointed at its own `mlartifacts/` when a Tracker opens it. Every run is tagged
with the git revision and, under `dvc exp run`, the DVC experiment that produced it. A Tracker
built with active=False (ranks other than 0) logs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from d2v.config import TrackingConfig, to_dict

log = logging.getLogger(__name__)


# Read once at import: MLflow's own set_tracking_uri writes this variable, so reading it later
# would let one Tracker's store leak into the next one built in the same process.
_ENV_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(cfg: TrackingConfig) -> str:
    """The user's MLFLOW_TRACKING_URI if set, else the param."""
    return _ENV_URI or cfg.uri


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_origin() -> dict[str, str]:
    """Tags naming what produced a run: the git revision (also as MLflow's own source tag, which
    its UI shows) and, inside `dvc exp run`, the DVC experiment, its baseline and the stage (DVC
    sets these variables for every stage command it runs)."""
    rev = git_revision()
    tags = {"git_revision": rev, "mlflow.source.git.commit": rev}
    for var, key in (
        ("DVC_EXP_NAME", "dvc_experiment"),
        ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev"),
        ("DVC_STAGE", "dvc_stage"),
    ):
        if os.environ.get(var):
            tags[key] = os.environ[var]
    return tags


def active_uri() -> str:
    """The store MLflow points at in this process ('' before any use): names the subject of a
    failure inside MLflow."""
    mlflow = sys.modules.get("mlflow")
    with contextlib.suppress(Exception):
        return mlflow.get_tracking_uri() if mlflow else ""
    return ""


def hardware() -> str:
    # a stage that never loaded torch (download, prepare, glue) used the CPU alone; importing
    # torch here only to say so cost the glue stage over a second
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


REACH_TIMEOUT_S = 5.0  # a tracking server that does not answer its health check in this is down


def check_reachable(uri: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """An http(s) tracking server answers `/health` within `timeout_s`, or this raises naming it
    (MLflow itself would retry each request for minutes, silently)."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    from d2v.failures import about

    with about(f"MLflow tracking server {uri}"):
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()


ARTIFACTS = "mlartifacts"  # beside a sqlite store
# MLflow's UI opens an experiment on its model-training pages for this kind (its GenAI pages
# otherwise): the value its front end maps to "machine_learning" (mlflow 3.x, server/js).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The columns of MLflow's SQL schema that hold absolute artifact locations (mlflow 3.x).
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def sqlite_db(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def relocate_artifacts(db: Path) -> int:
    """Point a moved or copied sqlite store at the `mlartifacts/` beside it; returns how many
    locations changed. MLflow resolves an artifact location to an absolute path when it creates
    the experiment and each run, so without this a copied clone would write into the old one's
    folder and a moved one would find no artifacts. Only locations that end in our own
    `mlartifacts` folder move; the rest (a server's, a user's) stay."""
    if not db.is_file():
        return 0
    new = (db.resolve().parent / ARTIFACTS).as_uri()
    changed = 0
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
            olds = {
                loc.rstrip("/")
                for (loc,) in con.execute("SELECT artifact_location FROM experiments")
                if loc and loc.startswith("file://") and loc.rstrip("/").endswith(f"/{ARTIFACTS}")
            } - {new}
            for old in olds:
                for table, col in _LOCATION_COLUMNS:
                    changed += con.execute(
                        f"UPDATE {table} SET {col} = ? || substr({col}, ?) "
                        f"WHERE {col} = ? OR substr({col}, 1, ?) = ?",
                        (new, len(old) + 1, old, len(old) + 1, f"{old}/"),
                    ).rowcount
                log.warning("tracking store %s moved: artifacts %s -> %s", db, old, new)
    except sqlite3.OperationalError as e:  # not an MLflow store yet (no tables)
        log.debug("no relocation of %s: %s", db, e)
    return changed


class Tracker:
    def __init__(self, cfg: TrackingConfig, active: bool = True):
        self.active = active
        self.cfg = cfg
        if not active:
            return
        import mlflow

        self.mlflow = mlflow
        uri = tracking_uri(cfg)
        check_reachable(uri)
        db = sqlite_db(uri)
        if db is not None:
            relocate_artifacts(db)
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.get_experiment_by_name(cfg.experiment)
        if experiment is None:
            location = (db.resolve().parent / ARTIFACTS).as_uri() if db is not None else None
            with contextlib.suppress(Exception):  # another process may create it first
                mlflow.create_experiment(
                    cfg.experiment, artifact_location=location, tags=EXPERIMENT_KIND
                )
        elif not EXPERIMENT_KIND.items() <= experiment.tags.items():  # created before the tag
            for k, v in EXPERIMENT_KIND.items():
                mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, k, v)
        mlflow.set_experiment(cfg.experiment)

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        nested: bool = False,
        parent_run_id: str | None = None,
        run_id: str | None = None,
    ) -> Iterator[str | None]:
        """Open a run (nested under the active one if `nested`); yields its id. A run left by an
        exception ends FAILED (MLflow's own context manager), with the error as a tag."""
        if not self.active:
            yield None
            return
        base = {**run_origin(), "hardware": hardware()}
        all_tags = {k: str(v) for k, v in {**base, **(tags or {})}.items()}
        if parent_run_id:  # a child of a run opened by another process (sweep workers)
            all_tags["mlflow.parentRunId"] = parent_run_id
        if run_id:  # reopen an existing run
            all_tags = {}
        with self.mlflow.start_run(
            run_id=run_id, run_name=None if run_id else name, nested=nested, tags=all_tags or None
        ) as run:
            if params:
                self.log_params(params)
            try:
                yield run.info.run_id
            except BaseException as e:
                self.mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
                raise

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested params (dataclasses or dicts) as flat dotted keys."""
        if not self.active:
            return
        flat = {k: str(v)[:6000] for k, v in flatten(to_dict(params)).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.mlflow.log_params(dict(items[i : i + 100]))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.active:
            self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_history(self, history: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """(step, metrics) rows logged afterwards (a worker's training curve) into the active run,
        in batches of MLflow's limit of 1000 values: one store transaction per batch where
        `log_metrics` per row took one each (~17 ms apiece on SQLite)."""
        if not self.active or not history:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [
            Metric(k, float(v), now, step) for step, metrics in history for k, v in metrics.items()
        ]
        run_id = self.mlflow.active_run().info.run_id
        client = self.mlflow.MlflowClient()
        for i in range(0, len(values), 1000):
            client.log_batch(run_id, metrics=values[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.active:
            self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.active:
            self.mlflow.log_artifact(str(path), artifact_path)

    def set_terminated(self, run_id: str, status: str) -> None:
        """End run `run_id` as `status` (FINISHED, FAILED, KILLED: a pruned trial)."""
        if self.active:
            self.mlflow.MlflowClient().set_terminated(run_id, status)

    def log_model(self, module: Any, name: str, example: Any = None) -> str | None:
        """`module` (an nn.Module, e.g. `EncoderFeatures`) as an MLflow PyTorch model of the
        active run; returns its `models:/` URI. `example` (a batch tensor) gives the signature,
        so `mlflow.pyfunc.load_model(uri).predict(array)` knows its input; lengths of 2-D inputs
        (samples, tokens) stay free. Saved with the pickle format: `pt2` (torch.export) took
        ~13 s per micro encoder here; loading needs d2v importable, as the stage outputs do.
        Torch refuses to pickle parametrized modules: fold them first
        (`d2v.encoder.fold_parametrizations`)."""
        if not self.active:
            return None
        import mlflow.pytorch
        import torch

        signature = None
        if example is not None:
            from mlflow.models import ModelSignature
            from mlflow.types import Schema, TensorSpec

            example = example.cpu()
            shape = (-1, -1) if example.dim() == 2 else (-1, *example.shape[1:])
            with torch.no_grad():
                out = module(example)
            signature = ModelSignature(
                Schema([TensorSpec(example.numpy().dtype, shape)]),
                Schema([TensorSpec(out.numpy().dtype, (-1,) * (out.dim() - 1) + out.shape[-1:])]),
            )
        # the pickle format's safety warning says what this docstring says, once per model
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        info = mlflow.pytorch.log_model(
            module,
            name=name,
            signature=signature,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__}"],  # inferring them takes seconds
        )
        return info.model_uri

    def register_if_best(
        self,
        model_uri: str,
        name: str,
        score: float,
        higher_is_better: bool,
        context: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Register `model_uri` as a new version of `name` and point the alias `best` at it if
        `score` beats the current best version's, or there is none yet, or that one was scored
        in another `context` (task, metric, model, data); returns the new version, or None when
        the current best stays. `tags` go on the version beside the context and the score."""
        if not self.active or not model_uri:
            return None
        from mlflow.exceptions import MlflowException

        client = self.mlflow.MlflowClient()
        context = {k: str(v) for k, v in context.items()}
        try:
            best = client.get_model_version_by_alias(name, "best")
        except MlflowException:  # no such model or alias yet
            best = None
        if best is not None and all(best.tags.get(k) == v for k, v in context.items()):
            old = float(best.tags.get("score", "nan"))
            if not (score > old if higher_is_better else score < old):
                log.info("%s: best stays version %s (%g vs %g)", name, best.version, old, score)
                return None
        version = self.mlflow.register_model(
            model_uri,
            name,
            tags={
                **{k: str(v) for k, v in (tags or {}).items()},
                **context,
                "score": repr(float(score)),
                **run_origin(),
            },
        )
        client.set_registered_model_alias(name, "best", version.version)
        log.info("%s: version %s is the best (%s %g)", name, version.version, context, score)
        return str(version.version)

    def log_text(self, text: str, name: str) -> None:
        if not self.active:
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(text)
            self.mlflow.log_artifact(str(p))
