"""Model files: a versioned .npz archive of plain arrays plus JSON metadata, no pickled code.

The file is written to a temporary name beside the target and renamed over it, so an
interrupted save never leaves a half-written model (the temporary file is removed on an
exception, Ctrl-C or SIGTERM; one left by a killed process is removed by the next save of
the same path); it gets the permissions a plain write would give (those of the file it
replaces, or 0666 less the umask). Weights are stored without the device they were trained
on, so a model trained on a GPU loads on a CPU and the other way round.
"""
import contextlib
import json
import os
import re
import signal
import socket
import stat
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from .data import check_readable, item_ids

FORMAT = "gru4rec-pytensor"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read back."""


class ModelSaveError(OSError, ValueError):
    """A model that cannot be written where the user asked (an OSError, and a ValueError like
    every other input problem); the message names the user's path, never the temporary file."""


ZIP_MAGIC = b"PK\x03\x04"     # .npz archives (what save writes)
NPY_MAGIC = b"\x93NUMPY"       # bare .npy arrays


def _umask():
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_target(path):
    """Raises ModelSaveError when `path` cannot be a model file: its directory is missing or not
    a directory, or the path is a directory. Used by save and, before training, by run.py -s."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ModelSaveError(f"Cannot save the model to {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise ModelSaveError(f"Cannot save the model to {path}: {parent} is not a directory")
    if path.is_dir():
        raise ModelSaveError(f"Cannot save the model to {path}: it is a directory")
    if not os.access(parent, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise ModelSaveError(f"Cannot save the model to {path}: the directory {parent} is not writable")


def check_save_path(path):
    """Raises ModelSaveError (one line naming `path`) if save(path, ...) cannot write there."""
    _check_target(Path(path))


def save(path, params, itemids, weights, error_during_train=False):
    """Writes params (JSON-able dict), item ids (pd.Index) and weights (name -> array) atomically."""
    path = Path(path)
    ids = item_ids(itemids).to_numpy().astype(str)  # canonical text (gru4rec.data.item_ids)
    meta = {"format": FORMAT, "version": VERSION, "params": params, "weights": list(weights),
            "error_during_train": bool(error_during_train)}
    arrays = {f"w_{k}": np.asarray(v) for k, v in weights.items()}
    arrays["itemids"] = ids
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _check_target(path)
    # The permissions a plain open(path, "w") would give: those of the file replaced, or
    # 0666 less the umask (mkstemp makes the temporary file 0600).
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    with _sigterm_raises(path):
        _remove_stale_temps(path)
        _write(path, arrays, mode)


def _write(path, arrays, mode):
    """Writes the archive to a temporary file beside `path` and renames it over `path`; the
    temporary file is removed on any exception, KeyboardInterrupt included."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=_temp_prefix(path),
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, ModelSaveError):
            raise ModelSaveError(f"Cannot save the model to {path}: {e.strerror or type(e).__name__}") from None
        raise


# Temporary files are named .NAME.HOST.PID.XXXXXXXX.tmp. A process killed while saving
# (SIGKILL, a power cut) leaves one behind; the next save of the same path on the same host
# removes those whose process is gone (and, from versions without HOST.PID in the name,
# .NAME.XXXXXXXX.tmp files older than an hour).
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
OLD_TEMP_AGE = 3600


def _temp_prefix(path):
    return f".{path.name}.{_HOST}.{os.getpid()}."


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: someone else's live process
        return True
    return True


def _remove_stale_temps(path):
    """Removes the temporary files of interrupted saves of `path` (see above)."""
    folder = path.parent if str(path.parent) else Path(".")
    name = re.escape(path.name)
    ours = re.compile(rf"\.{name}\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{{8}}\.tmp")
    old = re.compile(rf"\.{name}\.[A-Za-z0-9_]{{8}}\.tmp")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        m = ours.fullmatch(entry.name)
        try:
            if m and m["host"] == _HOST and not _pid_alive(int(m["pid"])):
                os.unlink(entry.path)
            elif not m and old.fullmatch(entry.name) and time.time() - entry.stat().st_mtime > OLD_TEMP_AGE:
                os.unlink(entry.path)
        except OSError:
            pass  # removed meanwhile, or not ours to remove


class _Terminated(BaseException):
    """SIGTERM arrived while a model was being written."""


def _raise_terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_raises(path):
    """While a model is written (in the main thread): SIGTERM raises inside the write, so its
    temporary file is removed, and is then delivered again to the handler that was there
    before (by default: the process ends by SIGTERM). An ignored SIGTERM stays ignored."""
    try:
        old = signal.getsignal(signal.SIGTERM)
        if old == signal.SIG_IGN or old is None or threading.current_thread() is not threading.main_thread():
            old = None
        else:
            signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):
        old = None
    if old is None:
        yield
        return
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, old)
        old = None
        signal.raise_signal(signal.SIGTERM)  # ends the process unless a handler returns
        raise ModelSaveError(f"Cannot save the model to {path}: interrupted by SIGTERM") from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _saved_item_ids(path, array):
    """The item ids of a model file in canonical text form (files written before it may hold
    int64 ids); ModelFileError when they are not unique."""
    try:
        ids = item_ids(array)
    except ValueError as e:
        raise ModelFileError(f"{path} holds bad item ids: {e}") from None
    if not ids.is_unique:
        dup = ids[ids.duplicated()][0]
        raise ModelFileError(f"{path} holds the item id {dup!r} more than once")
    return ids


def check_model_path(path):
    """Raises ModelFileError when `path` is missing, a directory or unreadable (load's first checks)."""
    check_readable(path, "model file", ModelFileError)


def load(path):
    """Returns (params, itemids as pd.Index, weights dict, error_during_train); raises
    ModelFileError with a one-line reason for missing, corrupt or foreign files."""
    path = Path(path)
    check_model_path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise ModelFileError(f"Cannot read the model file {path}: {e.strerror}") from None
    if not (head.startswith(ZIP_MAGIC) or head.startswith(NPY_MAGIC)):
        raise ModelFileError(f"{path} is not a readable GRU4Rec model file (it is not an .npz archive, "
                             "as GRU4Rec.save and run.py -s write them)")
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
            if not isinstance(meta.get("params"), dict) or not isinstance(meta.get("weights"), list) \
                    or "itemids" not in z.files:
                raise ModelFileError(f"{path} is not a complete GRU4Rec model file "
                                     "(its metadata lacks the parameters or the weight names, or it has no item ids)")
            missing = [k for k in meta["weights"] if f"w_{k}" not in z.files]
            if missing:
                raise ModelFileError(f"{path} lacks the array(s) {', '.join(missing)} named in its metadata")
            weights = {k: z[f"w_{k}"] for k in meta["weights"]}
            itemids = _saved_item_ids(path, z["itemids"])
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError) as e:
        reason = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path} is not a readable GRU4Rec model file ({reason})") from None
    return meta["params"], itemids, weights, bool(meta.get("error_during_train", False))
