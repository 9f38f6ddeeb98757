"""RandomStateCheckpoint: a resumed fit draws the random numbers the uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


class RandomStateCheckpoint(L.Callback):
    """Saves the global random generators in every checkpoint and restores them on resume.

    Lightning restores weights, optimisers, schedulers and loop counters from a checkpoint,
    but not the global generators of Python, NumPy and torch (CPU and every CUDA device).
    Training steps that draw from them (noise, dropout, Gumbel samples, OT pair draws,
    random times) then continue from whatever state the new process has, so a fit
    interrupted and resumed ends elsewhere than the same fit run through. With this
    callback the generators continue from the state they had when the checkpoint was
    written. ``zoo fit`` adds it to every run.

    A checkpoint written without it resumes as before (nothing to restore); one written on a
    machine with other CUDA devices restores the CPU, Python and NumPy states only.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        state = {  # tensors, numbers and tuples only: checkpoints load with weights_only
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "python" in state_dict:
            random.setstate(state_dict["python"])
        if "numpy" in state_dict:
            kind, keys, position, has_gauss, cached = state_dict["numpy"]
            keys = np.asarray(keys.numpy() if torch.is_tensor(keys) else keys, dtype=np.uint32)
            np.random.set_state((kind, keys, int(position), int(has_gauss), float(cached)))
        if "torch" in state_dict:
            torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        if (
            cuda is not None
            and torch.cuda.is_available()
            and len(cuda) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(cuda)
