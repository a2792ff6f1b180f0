"""MLflow: the one place that opens runs and logs params, metrics and artifacts.

Default store `sqlite:///mlruns.db` in the working directory (MLflow's own default since 3.x);
`MLFLOW_TRACKING_URI` overrides the param. Artifacts go to `mlartifacts/` beside the database
for a sqlite store. A Tracker built with active=False (ranks other than 0) logs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
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
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(cfg.experiment) is None:
            location = None
            if uri.startswith("sqlite:///"):
                db = Path(uri.removeprefix("sqlite:///")).resolve()
                location = (db.parent / "mlartifacts").as_uri()
            with contextlib.suppress(Exception):  # another process may create it first
                mlflow.create_experiment(cfg.experiment, artifact_location=location)
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
        base = {"git_revision": git_revision(), "hardware": hardware()}
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

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.active:
            self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.active:
            self.mlflow.log_artifact(str(path), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        if not self.active:
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(text)
            self.mlflow.log_artifact(str(p))
