"""Run records: what every run leaves in its output folder, and how to read it back.

    config.yaml    the resolved configuration
    metrics.json   final metrics and status (written last, atomically: its presence means done)
    run.h5         history/<column>   the loss and error history, one value per logged step
                   fields/<name>      the solution on an evaluation mesh: x, u_pred, u_exact
                   unknowns/<param>   an inverse problem's recovered unknowns (their state_dict)
                   model/<param>      the state_dict (weights and buffers: knots, edge masks,
                                      symbolic slots; a KAN layer's `_extra_state` is its
                                      sym_names as UTF-8 JSON bytes); attrs name and args
                                      rebuild the model
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from kanpde.registry import build_model, model_name

METRICS = "metrics.json"
H5 = "run.h5"
# state_dict entries newer than some records; a record without them gets the fresh model's values
# (all edges active, none symbolic).
_DEFAULTED = ("mask", "sym_mask", "sym_params", "_extra_state")


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (temp file, then rename), so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_h5(path: Path, history: list[dict], fields: dict[str, np.ndarray], model: nn.Module,
             extra: dict | None = None, unknowns: nn.Module | None = None) -> None:
    """The HDF5 part of a run record (see module docstring), written to a temp file first."""
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        hist = f.create_group("history")
        columns = sorted({k for row in history for k in row})
        for col in columns:
            hist.create_dataset(col, data=np.array([row.get(col, np.nan) for row in history], dtype=float))
        fl = f.create_group("fields")
        for name, arr in fields.items():
            fl.create_dataset(name, data=np.asarray(arr))
        grp = f.create_group("model")
        grp.attrs["name"] = model_name(model)
        grp.attrs["args"] = json.dumps(model.constructor_args())
        grp.attrs["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
        for key, val in model.state_dict().items():
            grp.create_dataset(key, data=val.detach().cpu().numpy())
        if unknowns is not None:
            grp = f.create_group("unknowns")
            for key, val in unknowns.state_dict().items():
                grp.create_dataset(key, data=val.detach().cpu().numpy())
        for key, val in (extra or {}).items():
            f.attrs[key] = json.dumps(val)
    os.replace(tmp, path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in a run folder's run.h5 (or the file itself)."""
    path = Path(path)
    path = path / H5 if path.is_dir() else path
    with h5py.File(path, "r") as f:
        grp = f["model"]
        args = json.loads(grp.attrs["args"])
        dtype = getattr(torch, grp.attrs["dtype"])
        state = {k: torch.from_numpy(np.array(grp[k])) for k in grp.keys()}
        model = build_model({"name": grp.attrs["name"], **args}, dtype=dtype)
    for key, value in model.state_dict().items():
        if key not in state and key.rsplit(".", 1)[-1] in _DEFAULTED:
            state[key] = value
    model.load_state_dict(state)
    from kanpde.nn.grid import is_uniform
    from kanpde.nn.kan import KANLayer

    for layer in model.modules():  # KAN layers anywhere, also in a network behind input features
        if isinstance(layer, KANLayer):
            layer.uniform = is_uniform(layer.knots)
    return model.to(device)


def read_history(path: str | Path) -> dict[str, np.ndarray]:
    """The history columns of a run folder's run.h5."""
    path = Path(path)
    path = path / H5 if path.is_dir() else path
    with h5py.File(path, "r") as f:
        return {k: np.array(v) for k, v in f["history"].items()}


def read_metrics(path: str | Path) -> dict:
    """metrics.json of a run folder."""
    return json.loads((Path(path) / METRICS).read_text())
