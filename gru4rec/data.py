"""Reading session data (spec 2), preparing it for training, and the session-parallel
minibatch schedule (spec 3.1) as static-shape arrays for the compiled training step."""
import datetime
import heapq
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data; the message is meant for the user as it is."""


# Item ids ----------------------------------------------------------------------------------
# One form everywhere (every reader, every DataFrame given to fit/evaluate/recommend, the ids a
# model file holds): text. A whole number is written without a fraction however it came, so
# the int 5, the float 5.0 (a pandas column that once held NaN), the text "5" and the text
# "5.0" (such a column written to TSV) are the same item; other text is kept as it is ("007"
# stays "007"), other floats become their shortest text ("2.5").

_WHOLE_TEXT = re.compile(r"-?[0-9]+\.0+")


def _item_id(v, key):
    """The canonical text of one item id (NaN/None kept for the missing-value check)."""
    if isinstance(v, str):
        return v.split(".")[0] if _WHOLE_TEXT.fullmatch(v) else v
    if isinstance(v, (bool, np.bool_)):
        raise DataError(f"column {key!r} must hold item ids as numbers or text; found the boolean {v!r}")
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if v != v:
            return v
        if not np.isfinite(v):
            raise DataError(f"column {key!r} must hold item ids as numbers or text; found {float(v)!r}")
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    if v is None:
        return v
    raise DataError(f"column {key!r} must hold item ids as numbers or text; found {type(v).__name__} {v!r:.60}")


def item_ids(ids, key="ItemId"):
    """Item ids (a Series, Index, array or list) in their canonical form: text, whole numbers
    without a fraction (see above). Returns the same kind (Series keep their index; lists and
    arrays become an object Index). Raises DataError for ids that are neither numbers nor
    text (booleans, infinities, tuples, ...)."""
    if not isinstance(ids, (pd.Series, pd.Index)):
        ids = pd.Index(pd.Series(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object))
    if len(ids) == 0:
        return ids if isinstance(ids, pd.Series) else pd.Index([], dtype=object)
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=True) in (
            "mixed", "mixed-integer", "mixed-integer-float", "boolean"):
        flags = [isinstance(v, (bool, np.bool_)) for v in ids]  # factorize takes True for 1
        if any(flags):
            _item_id(ids[flags.index(True)], key)
    if pd.api.types.is_integer_dtype(ids.dtype) and not pd.api.types.is_bool_dtype(ids.dtype):
        return ids.astype(str)
    if pd.api.types.is_string_dtype(ids.dtype):
        uniques = np.asarray(pd.unique(ids), dtype=object)
        if all(_item_id(u, key) is u for u in uniques):
            return ids  # already canonical text (the usual TSV case): no copy
    codes, uniques = pd.factorize(ids)
    uniques = np.asarray(uniques, dtype=object)
    canon = np.array([_item_id(u, key) for u in uniques] + [np.nan], dtype=object)
    out = canon[codes]  # code -1 (NaN) picks the trailing NaN
    if isinstance(ids, pd.Series):
        return pd.Series(out, index=ids.index, name=ids.name)
    return pd.Index(out)


def check_session_ids(col, key):
    """DataError when a session id column mixes numbers and text (5 and 'a' cannot be
    sorted into sessions; write them all as text or all as numbers)."""
    if col.dtype == object:
        kind = pd.api.types.infer_dtype(col, skipna=True)
        if kind.startswith("mixed") and kind != "mixed-integer-float":
            types = sorted({type(v).__name__ for v in pd.unique(col)})
            raise DataError(f"column {key!r} mixes session ids of types {', '.join(types)}; "
                            "session ids must be all numbers or all text")


def check_readable(path, what="file", error=DataError):
    """Raises `error` when `path` is not a file this process can read: missing ("File not
    found: PATH"), a directory, or unreadable (permissions). `what` names the kind of file
    (e.g. "model file")."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what[0].upper()}{what[1:]} not found: {path}")
    if path.is_dir():
        raise error(f"{path} is a directory, not a {what}")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise error(f"Cannot read {path}: {e.strerror or type(e).__name__}") from None


def check_output_dir(path, what="output folder"):
    """Raises DataError when `path` cannot become a folder to write files into: it is a file,
    or it (or, when missing, the nearest folder above it, where it would be created) is not
    writable. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"The {what} {path} is not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"The {what} {path} cannot be created: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise DataError(f"The {what} {path} cannot be written: {existing} is not writable")


def load(path, session_key="SessionId", item_key="ItemId", time_key="Time"):
    """Reads a TAB-separated file with a header (optionally .gz), a pickled DataFrame
    (.pickle/.pkl) or a parquet file. Item ids are returned as text from every kind of file
    (whole numbers without a fraction: see `item_ids`), so the files of one data set agree. Raises DataError for a missing,
    unreadable or directory path, a missing column or an empty file."""
    path = Path(path)
    check_readable(path)
    keys = [session_key, item_key, time_key]
    suffixes = path.suffixes
    try:
        if suffixes[-1:] in ([".pickle"], [".pkl"]):
            df = pd.read_pickle(path)
            if not isinstance(df, pd.DataFrame):
                raise DataError(f"{path} does not hold a pandas DataFrame")
        elif suffixes[-1:] == [".parquet"]:
            df = pd.read_parquet(path)
        else:
            _check_columns(path, pd.read_csv(path, sep="\t", nrows=0).columns, keys)
            df = pd.read_csv(path, sep="\t", usecols=keys, dtype={item_key: str})
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except Exception as e:  # corrupt archives, parse errors: one line for the user
        raise DataError(f"Cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    _check_columns(path, df.columns, keys)
    if len(df) == 0:
        raise DataError(f"{path} has no events")
    try:
        ids = item_ids(df[item_key], item_key)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    if ids is not df[item_key]:
        df = df.assign(**{item_key: ids})
    t = df[time_key]
    if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_datetime64_any_dtype(t)) and not t.isna().any():
        # date-time text becomes datetime64 here, so that every later sort is chronological
        df = df.assign(**{time_key: time_values(t, time_key, where=f"{path}: ")})
    return df


def _check_columns(path, columns, keys):
    names = dict(zip(keys, ("session IDs", "item IDs", "time")))
    for k in keys:
        if k not in columns:
            raise DataError(f'The column specified for {names[k]} "{k}" is not in the data file ({path}); '
                            f"columns found: {', '.join(map(str, columns)) or 'none'}")


def check_file(path, session_key="SessionId", item_key="ItemId", time_key="Time"):
    """What `load` can tell without reading the events: raises DataError if the file is
    missing or, for TAB-separated and parquet files, its header lacks one of the columns.
    run.py calls it for the test files before training."""
    path = Path(path)
    check_readable(path)
    suffixes = path.suffixes
    if suffixes[-1:] in ([".pickle"], [".pkl"]):
        return
    try:
        if suffixes[-1:] == [".parquet"]:
            import pyarrow.parquet as pq
            columns = pq.read_schema(path).names
        else:
            columns = pd.read_csv(path, sep="\t", nrows=0).columns
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except Exception as e:
        raise DataError(f"Cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    _check_columns(path, columns, [session_key, item_key, time_key])


TIME_FORMATS = "numbers or ISO 8601 date-times (e.g. 1396864269.5 or 2014-04-07 10:51:09)"


def time_values(col, time_key, where=""):
    """The time column as numbers or datetime64: numeric text becomes numbers and ISO 8601 text
    becomes datetime64, numbers and date-times are returned as they are. Raises DataError naming
    the column and a bad value for anything else: other text (e.g. 01/02/2014, day or month
    first?), booleans, infinities, date-times with and without, or with different, time zones."""
    bad = _time_error(time_key, where)
    if pd.api.types.is_bool_dtype(col):
        bad(col.iloc[0])
    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    if pd.api.types.is_numeric_dtype(col):
        v = col.to_numpy()
        if v.dtype.kind == "f" and np.isinf(v).any():
            bad(v[np.isinf(v)][0])
        return col
    obj = col.astype(object)
    if col.dtype == object:
        flags = obj.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(bool)
        if flags.any():
            bad(obj[flags].iloc[0])
    try:
        return time_values(pd.to_numeric(obj), time_key, where)
    except (ValueError, TypeError):
        pass  # not all numbers
    return _datetimes(obj, bad)


def _time_error(time_key, where):
    """bad(value, why=''): raises the DataError that names the time column and the value."""
    def bad(value, why=""):
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(f"{where}column {time_key!r} must hold {TIME_FORMATS}{why}; found {value!r}")
    return bad


def _datetimes(obj, bad):
    """Values that are not all numbers, as datetime64 when they are all ISO 8601 date-times
    in one time zone (or none); otherwise `bad` with a value that is not."""
    text = obj.map(lambda v: v if isinstance(v, (str, datetime.date, np.datetime64)) else _NOT_TEXT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError, OverflowError) as e:
        if "timezone" in str(e).lower() or "tz" in str(e).lower():
            _check_one_zone(text, bad)
    bad(_first_unparsed(obj, text))


def _check_one_zone(text, bad):
    """`bad` with the first date-time that does not parse or is in a second time zone."""
    zones = {}
    for v in pd.unique(text):
        try:
            zones.setdefault(pd.Timestamp(v).utcoffset(), v)
        except (ValueError, TypeError):
            bad(v)
        if len(zones) > 1:
            bad(v, " in one time zone")


def _first_unparsed(obj, text):
    """The value to name in the error: the first that does not parse as what most values
    parse as (numbers or date-times)."""
    num = pd.to_numeric(obj, errors="coerce")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dt = pd.to_datetime(text, format="ISO8601", errors="coerce")
        except (ValueError, TypeError, OverflowError):
            dt = pd.Series(pd.NaT, index=obj.index)
    failed = (num.isna() if num.notna().sum() > dt.notna().sum() else dt.isna()).to_numpy(bool)
    return obj[failed].iloc[0] if failed.any() else obj.iloc[0]


_NOT_TEXT = "(not text)"  # stands in for numbers in the ISO 8601 parse, which then refuses them


def check_frame(df, session_key, item_key, time_key):
    """Raises DataError naming the problem for frames `fit`/evaluation cannot use: not a
    DataFrame, a missing column, no rows, NaN values, session ids that mix numbers and text,
    or a time column that holds something
    other than numbers or ISO 8601 date-times. Returns the time column as numbers/datetime64."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    for k in (session_key, item_key, time_key):
        if k not in df.columns:
            raise DataError(f"column {k!r} is missing from the data (columns: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise DataError("the data frame is empty")
    for k in (session_key, item_key, time_key):
        n = int(df[k].isna().sum())
        if n:
            raise DataError(f"column {k!r} has {n} missing (NaN) value(s)")
    check_session_ids(df[session_key], session_key)
    return time_values(df[time_key], time_key)


def sort_if_needed(df, keys):
    """`df` sorted by keys (a new frame) unless already sorted, logging the messages of spec 2.4.

    The original sorts the caller's frame in place; we leave the caller's data untouched."""
    s = df[keys[0]].to_numpy()
    t = df[keys[1]].to_numpy()
    same = s[1:] == s[:-1]
    bad_s = bool(np.any(s[1:] < s[:-1]))
    bad_t = bool(np.any((t[1:] < t[:-1]) & same))
    if not (bad_s or bad_t):
        log.info("The dataframe is already sorted by %s", ", ".join(keys))
        return df
    log.info("The dataframe is not sorted by %s, sorting now", keys[0] if bad_s else keys[1])
    t0 = time.time()
    df = df.sort_values(keys, kind="mergesort", ignore_index=True)
    log.info("Data is sorted in %.2f", time.time() - t0)
    return df


@dataclass
class TrainingData:
    """Training events as index arrays (spec 2.3-2.7)."""
    items: np.ndarray        # int32, item index of every event, sorted by session then time
    offsets: np.ndarray      # int64, n_sessions + 1 session boundaries into `items`
    base_order: np.ndarray   # session processing order (oldest first when time_sort)
    pop: np.ndarray          # float32 support count per item index
    itemids: pd.Index        # item id of every item index (first-appearance order)


def prepare(df, session_key, item_key, time_key, time_sort=True):
    """Maps items (their canonical text, `item_ids`) to indices in order of first appearance (spec 2.3), sorts (2.4), builds
    session offsets (2.5), the base order (2.6) and support counts (2.7)."""
    times = check_frame(df, session_key, item_key, time_key)
    ids = item_ids(df[item_key], item_key)
    itemids = pd.Index(pd.unique(ids))
    df = df[[session_key, item_key, time_key]]
    if ids is not df[item_key]:
        df = df.assign(**{item_key: ids})
    if times.dtype != df[time_key].dtype:  # numeric or date-time text: sort by the parsed times
        df = df.assign(**{time_key: times})
    df = sort_if_needed(df, [session_key, time_key])
    items = itemids.get_indexer(df[item_key]).astype(np.int32)
    sessions = df[session_key].to_numpy()
    starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
    offsets = np.r_[starts, len(df)].astype(np.int64)
    if time_sort:
        base_order = np.argsort(df[time_key].to_numpy()[starts], kind="stable")
    else:
        base_order = np.arange(len(starts))
    pop = np.bincount(items, minlength=len(itemids)).astype(np.float32)
    return TrainingData(items=items, offsets=offsets, base_order=base_order, pop=pop, itemids=itemids)


@dataclass
class Schedule:
    """One epoch of session-parallel minibatches with static shape (steps x slots).

    Inactive slots (the shrinking tail) hold `pad` as input and target and are masked out;
    `reset` marks the steps whose target is the last event of the slot's session.
    """
    x: np.ndarray        # int32 (T, B)
    y: np.ndarray        # int32 (T, B)
    active: np.ndarray   # float32 (T, B), 1 where the slot trains in that step
    reset: np.ndarray    # float32 (T, B)

    @property
    def n_steps(self):
        return len(self.x)

    def padded(self, k, pad):
        """The schedule padded with all-inactive steps to a multiple of k steps."""
        extra = -len(self.x) % k
        if extra == 0:
            return self
        b = self.x.shape[1]
        return Schedule(np.vstack([self.x, np.full((extra, b), pad, np.int32)]),
                        np.vstack([self.y, np.full((extra, b), pad, np.int32)]),
                        np.vstack([self.active, np.zeros((extra, b), np.float32)]),
                        np.vstack([self.reset, np.zeros((extra, b), np.float32)]))


def check_batch_size(n_sessions, batch_size):
    """Session-parallel training needs a session for every slot at the start (spec 3.1)."""
    if n_sessions < batch_size:
        raise DataError(f"the data has {n_sessions} sessions, fewer than batch_size={batch_size}; "
                        "lower batch_size or add data")


def session_parallel_schedule(items, offsets, order, batch_size, pad, stop_below_two=False):
    """Replays the minibatch loop of spec 3.1 and records every step.

    A slot that finishes its session takes the next session of `order`; slots finishing
    at the same step take them in ascending slot order, and sessions with a single event are
    consumed without a step. When sessions run out the batch shrinks (slots go inactive).
    `stop_below_two` ends the epoch once fewer than two slots are active (n_sample == 0).
    Raises DataError if there are fewer sessions than slots.
    """
    n_sessions = len(order)
    check_batch_size(n_sessions, batch_size)
    lengths = (offsets[order + 1] - offsets[order]).astype(np.int64)
    pairs = lengths - 1
    # Heap of (free step, wave, slot): `wave` orders repeated hand-outs at one step after
    # single-event sessions, so the assignment is the original's round by round.
    heap = [(0, 0, s) for s in range(batch_size)]
    slot_of = np.empty(n_sessions, np.int64)
    start_of = np.empty(n_sessions, np.int64)
    for k in range(n_sessions):
        t, wave, s = heapq.heappop(heap)
        slot_of[k], start_of[k] = s, t
        p = pairs[k]
        heapq.heappush(heap, (t + p, wave + 1, s) if p <= 0 else (t + p, 0, s))
    keep = pairs > 0
    slot_of, start_of, pairs, sess = slot_of[keep], start_of[keep], pairs[keep], order[keep]
    n_steps = int((start_of + pairs).max()) if len(pairs) else 0
    total = int(pairs.sum())
    rep = np.repeat(np.arange(len(pairs)), pairs)
    within = np.arange(total) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    step = start_of[rep] + within
    slot = slot_of[rep]
    pos = offsets[sess][rep] + within
    x = np.full((n_steps, batch_size), pad, np.int32)
    y = np.full((n_steps, batch_size), pad, np.int32)
    active = np.zeros((n_steps, batch_size), np.float32)
    reset = np.zeros((n_steps, batch_size), np.float32)
    x[step, slot] = items[pos]
    y[step, slot] = items[pos + 1]
    active[step, slot] = 1
    reset[(start_of + pairs - 1), slot_of] = 1
    sched = Schedule(x, y, active, reset)
    if stop_below_two:
        few = np.flatnonzero(active.sum(axis=1) < 2)
        if len(few):
            t = few[0]
            sched = Schedule(x[:t], y[:t], active[:t], reset[:t])
    return sched
