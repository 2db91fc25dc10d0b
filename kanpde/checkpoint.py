"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is one `torch.save` file per restart in the run folder's `checkpoints/`, replaced
atomically (written to a temporary file beside it, then renamed), so a kill at any moment leaves
the previous checkpoint whole. It holds (see `kanpde.train.train`):

    version, done          format version; whether this restart has finished (ok or diverged)
    stage, step, lr        where training stands: the next step to take and the stage's
                           learning rate (halved by each divergence retry)
    model                  name, constructor args and state_dict (a grid extension changes the args)
    extra                  the problem's trained unknowns (inverse problems), as tensors
    optimizer              the optimiser's state_dict (L-BFGS memory, Adam moments) or None
    data, generator, rng   the training points (resampling changes them), the data generator's
                           state and torch's global RNG state
    reg_x, best, retries   the regulariser's sample subset, the loss divergence is measured against,
                           retries used in this stage
    result                 history rows, status, steps, evals, wall_s, grid_changes, recoveries

Loading uses `weights_only=True`: a checkpoint holds tensors and plain data only, so a foreign
file cannot execute code; an unreadable one is reported, not trusted.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kanpde.registry import build_model, model_name

log = logging.getLogger(__name__)

VERSION = 1
FOLDER = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (unreadable, foreign or from another version)."""


@dataclass
class Checkpoints:
    """Where one restart's checkpoint lives and how often it is written.

    Attributes:
        path: the checkpoint file.
        every: write every n optimiser steps (0: only at stage ends, on a stop request and at
            the end).
    """

    path: Path
    every: int = 25

    @classmethod
    def in_run(cls, out_dir: str | Path, restart: int, every: int) -> Checkpoints:
        return cls(Path(out_dir) / FOLDER / f"restart-{restart}.pt", every)

    def save(self, state: dict) -> None:
        """Write `state` atomically: temporary file in the same folder, fsync, rename."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"version": VERSION, **state}, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a group sharing the folder
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load(self) -> dict | None:
        """The saved state, or None when there is none; CheckpointError when it is unusable."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"checkpoint {self.path} is unreadable ({type(exc).__name__}: {exc}); "
                                  "delete it to start this run afresh") from None
        if not isinstance(state, dict) or state.get("version") != VERSION:
            raise CheckpointError(f"checkpoint {self.path} is not a kanpde checkpoint of version {VERSION}; "
                                  "delete it to start this run afresh")
        return state


def pack_model(model: nn.Module) -> dict:
    """A model as name, constructor args and a detached copy of its state_dict."""
    return {"name": model_name(model), "args": model.constructor_args(),
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def unpack_model(packed: dict, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    """The model `pack_model` saved, on `device`."""
    from kanpde.nn.grid import is_uniform

    model = build_model({"name": packed["name"], **packed["args"]}, dtype=dtype)
    model.load_state_dict(packed["state"])
    for layer in getattr(model, "layers", ()):
        if hasattr(layer, "knots"):
            layer.uniform = is_uniform(layer.knots)
    return model.to(device)
