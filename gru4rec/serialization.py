"""Model files: a versioned .npz archive of plain arrays plus JSON metadata, no pickled code.

The file is written to a temporary name beside the target and renamed over it, so an
interrupted save never leaves a half-written model. Weights are stored without the device
they were trained on, so a model trained on a GPU loads on a CPU and the other way round.
"""
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "gru4rec-pytensor"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read back."""


def save(path, params, itemids, weights, error_during_train=False):
    """Writes params (JSON-able dict), item ids (pd.Index) and weights (name -> array) atomically."""
    path = Path(path)
    ids = itemids.to_numpy()
    ids = ids.astype(np.int64) if np.issubdtype(ids.dtype, np.integer) else ids.astype(str)
    meta = {"format": FORMAT, "version": VERSION, "params": params, "weights": list(weights),
            "error_during_train": bool(error_during_train)}
    arrays = {f"w_{k}": np.asarray(v) for k, v in weights.items()}
    arrays["itemids"] = ids
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """Returns (params, itemids as pd.Index, weights dict, error_during_train); raises
    ModelFileError with a one-line reason for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path} is not a GRU4Rec model file (a bare array)")
        with z:
            if "meta" not in z.files:
                raise ModelFileError(f"{path} is not a GRU4Rec model file (no metadata)")
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise ModelFileError(f"{path} is not a GRU4Rec model file (format {meta.get('format')!r})")
            if meta.get("version") != VERSION:
                raise ModelFileError(f"{path} has model format version {meta.get('version')}; "
                                     f"this gru4rec reads version {VERSION}")
            weights = {k: z[f"w_{k}"] for k in meta["weights"]}
            itemids = pd.Index(z["itemids"])
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError) as e:
        reason = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path} is not a readable GRU4Rec model file ({reason})") from None
    return meta["params"], itemids, weights, meta["error_during_train"]
