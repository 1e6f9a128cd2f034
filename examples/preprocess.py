"""Turn a raw public session data set into the four GRU4Rec splits.

    python examples/preprocess.py DATASET -p RAW_DIR_OR_FILE [RAW_FILE ...] [-o OUTDIR]

DATASET is one of rsc15, yoochoose, rees46, coveo, retailrocket, diginetica. The rules
follow the specification (ALGORITHM.md section 15):

* ``rsc15`` (15.1, the setup of the original GRU4Rec papers): one-pass filtering, no
  deduplication, split by session *end*, test items unseen in training removed. Writes
  ``rsc15_{train_full,test,train_tr,train_valid}.txt``.
* the five data sets of the RecSys'23 comparison (15.2): view events only, sessions
  rebuilt from user histories with a 1 hour gap where needed, consecutive repeats removed,
  iterative filtering, split by session *start*. Writes ``<prefix>full.tsv``,
  ``<prefix>{train_full,test,train_tr,train_valid}.tsv`` and ``stats.tsv``.

Inputs are read in chunks, keeping only the needed columns with compact dtypes, so that the
full data sets (tens of millions of rows) fit in a few GiB. Compressed inputs (.gz, .zip,
.bz2, .xz) are read transparently. Bad input makes the script print one line on stderr and
exit with status 1.
"""

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

DAY = 86400  # seconds
SESSION_GAP = 3600  # seconds; a longer pause between two events of a user starts a new session
MIN_ITEM_SUPPORT = 5
MIN_SESSION_LENGTH = 2
COLUMNS = ['SessionId', 'ItemId', 'Time']
COMPRESSED_SUFFIXES = ('', '.gz', '.zip', '.bz2', '.xz')
DEFAULT_CHUNKSIZE = 2_000_000


class PreprocessError(Exception):
    """Bad input; main() reports it as one line on stderr and exits with status 1."""


# --------------------------------------------------------------------------------------------
# Reading raw files
# --------------------------------------------------------------------------------------------

def _normalise(name: str) -> str:
    """Column-name key that ignores case and underscores (``sessionId`` == ``session_id``)."""
    return str(name).strip().lower().replace('_', '')


def _header(path: Path, sep: str) -> list[str]:
    try:
        return list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise PreprocessError(f'{path}: the file is empty') from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PreprocessError(f'{path}: cannot read the header: {_first_line(e)}') from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_chunks(path: Path, columns: dict[str, str], sep: str = ',',
                chunksize: int = DEFAULT_CHUNKSIZE) -> Iterator[pd.DataFrame]:
    """Yield chunks of the named columns of a headed CSV, renamed to the keys of `columns`.

    `columns` maps the wanted column name to its dtype; the header is matched ignoring case and
    underscores, so that the spellings of different releases of a data set are accepted.
    Reading only these columns with fixed dtypes keeps the memory use small.
    """
    header = _header(path, sep)
    by_key = {_normalise(c): c for c in header}
    missing = [c for c in columns if _normalise(c) not in by_key]
    if missing:
        raise PreprocessError(f'{path}: missing column(s) {", ".join(missing)} '
                              f'(found: {", ".join(map(str, header))})')
    actual = {by_key[_normalise(c)]: c for c in columns}
    dtypes = {by_key[_normalise(c)]: t for c, t in columns.items()}
    yield from _checked_chunks(path, lambda: pd.read_csv(
        path, sep=sep, usecols=list(actual), dtype=dtypes, chunksize=chunksize), actual)


def read_headerless_chunks(path: Path, columns: dict[str, str], sep: str = ',',
                           chunksize: int = DEFAULT_CHUNKSIZE) -> Iterator[pd.DataFrame]:
    """Like read_chunks for files without a header: `columns` names the first len(columns)
    fields in order (the YOOCHOOSE .dat files)."""
    try:
        first = pd.read_csv(path, sep=sep, header=None, nrows=1)
    except pd.errors.EmptyDataError:
        raise PreprocessError(f'{path}: the file is empty') from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PreprocessError(f'{path}: cannot read: {_first_line(e)}') from None
    if first.shape[1] < len(columns):
        raise PreprocessError(f'{path}: expected at least {len(columns)} comma-separated fields '
                              f'({", ".join(columns)}), found {first.shape[1]}')
    names = dict(enumerate(columns))
    dtypes = {i: t for i, t in enumerate(columns.values())}
    yield from _checked_chunks(path, lambda: pd.read_csv(
        path, sep=sep, header=None, usecols=list(names), dtype=dtypes, chunksize=chunksize), names)


def _checked_chunks(path: Path, open_reader: Callable, rename: dict) -> Iterator[pd.DataFrame]:
    """Iterate a chunked reader, turning parse errors into one-line PreprocessErrors."""
    rows = 0
    try:
        with open_reader() as reader:
            for chunk in reader:
                rows += len(chunk)
                yield chunk.rename(columns=rename)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PreprocessError(f'{path}: cannot parse: {_first_line(e)}') from None
    if rows == 0:
        raise PreprocessError(f'{path}: the file has no data rows')


def parse_epoch(strings: pd.Series, unit: str, path: Path, suffix: str = '') -> np.ndarray:
    """Parse UTC time strings into integer epoch time (unit 'D', 's' or 'ms'), truncating.

    A fixed `suffix` ('Z', ' UTC') is checked and cut off, so that pandas' fast ISO 8601 parser
    can be used (about 10x faster than an explicit strptime format on tens of millions of rows).
    """
    if suffix:
        if not strings.str.endswith(suffix).fillna(False).all():
            raise PreprocessError(f'{path}: bad time value: not all values end with {suffix!r}')
        strings = strings.str.slice(0, -len(suffix))
    try:
        parsed = pd.to_datetime(strings, format='ISO8601')
    except (ValueError, TypeError) as e:
        raise PreprocessError(f'{path}: bad time value: {_first_line(e)}') from None
    if parsed.isna().any():
        raise PreprocessError(f'{path}: missing time value')
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert(None)
    # datetime64 -> coarser unit truncates toward -inf for these (post-1970) dates
    return parsed.to_numpy().astype(f'datetime64[{unit}]').astype(np.int64)


def compact_int(values: np.ndarray) -> np.ndarray:
    """int32 when the values fit (ids of the real data sets do), to halve the memory use."""
    if len(values) and values.min() >= np.iinfo(np.int32).min and values.max() <= np.iinfo(np.int32).max:
        return values.astype(np.int32)
    return values.astype(np.int64)


class Factorizer:
    """Maps string keys (Coveo hashes) to consecutive integers in order of first appearance,
    across chunks, so the strings themselves never need to be held for the whole file."""

    def __init__(self):
        self.codes: dict[str, int] = {}

    def __call__(self, keys: pd.Series) -> np.ndarray:
        local, uniques = pd.factorize(keys, use_na_sentinel=True)
        mapped = np.empty(len(uniques) + 1, dtype=np.int64)
        mapped[-1] = -1  # missing key (NaN) -> -1
        for j, key in enumerate(uniques):
            mapped[j] = self.codes.setdefault(key, len(self.codes))
        return mapped[local]  # local == -1 picks mapped[-1]


def _frame(session, item, time) -> pd.DataFrame:
    return pd.DataFrame({'SessionId': compact_int(np.asarray(session)),
                         'ItemId': compact_int(np.asarray(item)),
                         'Time': np.asarray(time)})


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def read_yoochoose_clicks(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """YOOCHOOSE .dat files (no header: session, ISO time, item, category); Time in epoch ms.

    Used by both rsc15 and yoochoose; rows stay in file order (the item map of GRU4Rec depends
    on the order of first appearance, so the order of the output matters).
    """
    sessions, items, times = [], [], []
    for path in paths:
        for chunk in read_headerless_chunks(path, {'SessionId': 'int64', 'Time': 'str',
                                                   'ItemId': 'int64'}, chunksize=chunksize):
            sessions.append(chunk['SessionId'].to_numpy())
            items.append(chunk['ItemId'].to_numpy())
            times.append(parse_epoch(chunk['Time'], 'ms', path, suffix='Z'))
    return _frame(_concat(sessions, np.int64), _concat(items, np.int64), _concat(times, np.int64))


def read_rsc15(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """rsc15: Time in float seconds (the original took datetime.timestamp() of the parsed
    string in the local time zone; here UTC is used, which only shifts all times by a constant
    for the April-September 2014 data and so changes no split)."""
    df = read_yoochoose_clicks(paths, chunksize)
    df['Time'] = df['Time'] / 1000.0
    return df


def read_yoochoose(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """yoochoose (15.2): clicks + test file concatenated, given session ids, integer seconds."""
    df = read_yoochoose_clicks(paths, chunksize)
    df['Time'] = df['Time'] // 1000
    return df


def read_rees46(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """Rees46: view events only; sessions rebuilt per user with the 1 hour gap, computed on the
    view events sorted by user, time, item. Time in integer seconds."""
    users, items, times = [], [], []
    for path in paths:
        for chunk in read_chunks(path, {'event_time': 'str', 'event_type': 'str',
                                        'product_id': 'int64', 'user_id': 'int64'},
                                 chunksize=chunksize):
            chunk = chunk[chunk['event_type'] == 'view']
            users.append(chunk['user_id'].to_numpy())
            items.append(chunk['product_id'].to_numpy())
            times.append(parse_epoch(chunk['event_time'], 's', path, suffix=' UTC'))
    user, item, time = (_concat(users, np.int64), _concat(items, np.int64),
                        _concat(times, np.int64))
    order = np.lexsort((item, time, user))
    user, item, time = user[order], item[order], time[order]
    return _frame(sessions_from_gaps(user, time, SESSION_GAP), item, time)


def read_coveo(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """Coveo: sessions = session_id_hash split at 1 hour gaps, computed on *all* events; then
    only 'detail' events are kept. Item hashes become integers in order of first appearance
    among the detail events. Time in epoch ms."""
    session_codes, item_codes = Factorizer(), Factorizer()
    users, items, times, views = [], [], [], []
    for path in paths:
        for chunk in read_chunks(path, {'session_id_hash': 'str', 'product_action': 'str',
                                        'product_sku_hash': 'str',
                                        'server_timestamp_epoch_ms': 'int64'},
                                 chunksize=chunksize):
            view = (chunk['product_action'] == 'detail').to_numpy(dtype=bool)
            item = np.full(len(chunk), -1, dtype=np.int64)
            item[view] = item_codes(chunk['product_sku_hash'][view])
            users.append(session_codes(chunk['session_id_hash']))
            items.append(item)
            times.append(chunk['server_timestamp_epoch_ms'].to_numpy())
            views.append(view & (item >= 0))  # a detail event without a product is unusable
    return _views_of_user_sessions(users, items, times, views, SESSION_GAP * 1000)


def read_retailrocket(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """RetailRocket: sessions = visitorid split at 1 hour gaps, computed on *all* events; then
    only 'view' events are kept. Time in epoch ms."""
    users, items, times, views = [], [], [], []
    for path in paths:
        for chunk in read_chunks(path, {'timestamp': 'int64', 'visitorid': 'int64',
                                        'event': 'str', 'itemid': 'int64'}, chunksize=chunksize):
            users.append(chunk['visitorid'].to_numpy())
            items.append(chunk['itemid'].to_numpy())
            times.append(chunk['timestamp'].to_numpy())
            views.append((chunk['event'] == 'view').to_numpy(dtype=bool))
    return _views_of_user_sessions(users, items, times, views, SESSION_GAP * 1000)


def _views_of_user_sessions(users, items, times, views, gap) -> pd.DataFrame:
    """Build gap-based sessions over all events of each user, then keep the view events."""
    user, item, time, view = (_concat(users, np.int64), _concat(items, np.int64),
                              _concat(times, np.int64), _concat(views, bool))
    order = np.lexsort((time, user))
    user, item, time, view = user[order], item[order], time[order], view[order]
    session = sessions_from_gaps(user, time, gap)
    return _frame(session[view], item[view], time[view])


def read_diginetica(paths: list[Path], chunksize: int) -> pd.DataFrame:
    """Diginetica train-item-views.csv (';'-separated): given session ids; Time in ms is
    unix seconds of the session's earliest eventdate * 1000 + timeframe."""
    sessions, items, frames, days = [], [], [], []
    for path in paths:
        for chunk in read_chunks(path, {'sessionId': 'int64', 'itemId': 'int64',
                                        'timeframe': 'int64', 'eventdate': 'str'},
                                 sep=';', chunksize=chunksize):
            sessions.append(chunk['sessionId'].to_numpy())
            items.append(chunk['itemId'].to_numpy())
            frames.append(chunk['timeframe'].to_numpy())
            days.append(parse_epoch(chunk['eventdate'], 'D', path))
    session = _concat(sessions, np.int64)
    day = pd.Series(_concat(days, np.int64)).groupby(session).transform('min').to_numpy()
    return _frame(session, _concat(items, np.int64), day * DAY * 1000 + _concat(frames, np.int64))


# --------------------------------------------------------------------------------------------
# The common pipeline
# --------------------------------------------------------------------------------------------

def sessions_from_gaps(user: np.ndarray, time: np.ndarray, gap: int) -> np.ndarray:
    """Session ids 1, 2, ... for events sorted by (user, time): a new session starts when the
    user changes or the time since the user's previous event exceeds `gap`."""
    new = np.ones(len(user), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (time[1:] - time[:-1] > gap)
    return np.cumsum(new, dtype=np.int64)


def session_lengths(df: pd.DataFrame) -> np.ndarray:
    """Number of events of each row's session."""
    return df.groupby('SessionId', sort=False)['SessionId'].transform('size').to_numpy()


def item_supports(df: pd.DataFrame) -> np.ndarray:
    """Number of events of each row's item."""
    return df.groupby('ItemId', sort=False)['ItemId'].transform('size').to_numpy()


def session_starts(df: pd.DataFrame) -> np.ndarray:
    return df.groupby('SessionId', sort=False)['Time'].transform('min').to_numpy()


def session_ends(df: pd.DataFrame) -> np.ndarray:
    return df.groupby('SessionId', sort=False)['Time'].transform('max').to_numpy()


def drop_short_sessions(df: pd.DataFrame, min_length: int = MIN_SESSION_LENGTH) -> pd.DataFrame:
    return df[session_lengths(df) >= min_length]


def remove_consecutive_repeats(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by session, time, item (stable) and drop an event whose session and item equal the
    previous row's: (i, i, j) -> (i, j); non-consecutive repeats (i, j, i) stay."""
    order = np.lexsort((df['ItemId'].to_numpy(), df['Time'].to_numpy(),
                        df['SessionId'].to_numpy()))
    df = df.iloc[order]
    session, item = df['SessionId'].to_numpy(), df['ItemId'].to_numpy()
    keep = np.ones(len(df), dtype=bool)
    keep[1:] = (session[1:] != session[:-1]) | (item[1:] != item[:-1])
    return df[keep].reset_index(drop=True)


def filter_iteratively(df: pd.DataFrame) -> pd.DataFrame:
    """15.2 step 5: drop sessions of length 1, then items with support < 5, and repeat until a
    round removes nothing, so that both conditions hold in the result."""
    while True:
        before = len(df)
        df = df[session_lengths(df) > 1]
        df = df[item_supports(df) >= MIN_ITEM_SUPPORT]
        if len(df) == before:
            return df.reset_index(drop=True)


def filter_once(df: pd.DataFrame) -> pd.DataFrame:
    """15.1 step 2 (rsc15): one pass only, so items may end up with support < 5 again."""
    df = df[session_lengths(df) > 1]
    df = df[item_supports(df) >= MIN_ITEM_SUPPORT]
    return drop_short_sessions(df).reset_index(drop=True)


def split_by_session_start(df: pd.DataFrame, boundary) -> tuple[pd.DataFrame, pd.DataFrame]:
    """15.2 split: test = whole sessions that start at or after `boundary`; train = the events
    before `boundary` (sessions crossing it are truncated), sessions of length 1 removed.

    Applied to train_full again for train_tr / train_valid: a session's start in train_full
    equals its start in the full set (train_full only loses events at or after the boundary
    and whole sessions), as the spec requires.
    """
    test = df[session_starts(df) >= boundary]
    train = drop_short_sessions(df[df['Time'].to_numpy() < boundary])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def split_by_session_end(df: pd.DataFrame, tday, tsplit=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """15.1 split (rsc15): sessions ending before max time - tday -> train, the rest -> test;
    test events of items missing from train are dropped, then test sessions shorter than 2."""
    if tsplit is None:
        tsplit = df['Time'].max()
    is_train = session_ends(df) < tsplit - tday
    train, test = df[is_train], df[~is_train]
    test = test[test['ItemId'].isin(train['ItemId'].unique())]
    test = drop_short_sessions(test)
    return train.reset_index(drop=True), test.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Output and statistics
# --------------------------------------------------------------------------------------------

def write_tsv(df: pd.DataFrame, path: Path) -> None:
    df[COLUMNS].to_csv(path, sep='\t', index=False)


def print_counts(label: str, df: pd.DataFrame) -> None:
    """The per-set statistics line (tests parse it: label, Events, Sessions, Items)."""
    print(f'{label}\tEvents: {len(df)}\tSessions: {df["SessionId"].nunique()}'
          f'\tItems: {df["ItemId"].nunique()}')


def _utc(t: float, units_per_second: int) -> str:
    return datetime.fromtimestamp(t / units_per_second, tz=timezone.utc).strftime('%Y-%m-%d %H:%M:%S')


def stats_row(name: str, df: pd.DataFrame, units_per_second: int) -> dict:
    """One stats.tsv row (15.2 step 7). NumDays = (EndTime - StartTime) in days; session time =
    last minus first event time of a session, in seconds; AvgItemViews = events per item."""
    row = {'Dataset': name, 'NumEvents': len(df), 'NumSessions': df['SessionId'].nunique(),
           'NumItems': df['ItemId'].nunique()}
    if len(df) == 0:
        return row  # the remaining columns stay empty
    tmin, tmax = df['Time'].min(), df['Time'].max()
    by_session = df.groupby('SessionId')['Time']
    lengths = by_session.size()
    durations = (by_session.max() - by_session.min()) / units_per_second
    row.update({
        'NumDays': round((tmax - tmin) / units_per_second / DAY, 4),
        'StartTime': _utc(tmin, units_per_second), 'EndTime': _utc(tmax, units_per_second),
        'AvgItemViews': round(len(df) / row['NumItems'], 4),
        'MinSessionLength': int(lengths.min()), 'MaxSessionLength': int(lengths.max()),
        'AvgSessionLength': round(float(lengths.mean()), 4),
        'MinSessionTime (sec)': float(durations.min()), 'MaxSessionTime (sec)': float(durations.max()),
    })
    return row


STATS_COLUMNS = ['Dataset', 'NumEvents', 'NumSessions', 'NumItems', 'NumDays', 'StartTime',
                 'EndTime', 'AvgItemViews', 'MinSessionLength', 'MaxSessionLength',
                 'AvgSessionLength', 'MinSessionTime (sec)', 'MaxSessionTime (sec)']


# --------------------------------------------------------------------------------------------
# Data sets and the two pipelines
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    reader: Callable[[list[Path], int], pd.DataFrame]
    raw_files: tuple[str, ...]  # the expected file names when -p is a directory
    units_per_second: int  # 1 (Time in s) or 1000 (Time in ms)
    tsplit: int | None  # None: the max timestamp of the processed data
    tday: int  # length of the test (and of the validation) window, in Time units
    prefix: str


DATASETS = {
    'rsc15': Dataset(read_rsc15, ('yoochoose-clicks.dat',), 1, None, DAY, 'rsc15_'),
    'yoochoose': Dataset(read_yoochoose, ('yoochoose-clicks.dat', 'yoochoose-test.dat'), 1,
                         None, DAY, 'yoochoose_processed_view_'),
    'rees46': Dataset(read_rees46, ('2019-Oct.csv', '2019-Nov.csv'), 1, 1575158400, DAY,
                      'rees46_processed_view_userbased_'),
    'coveo': Dataset(read_coveo, ('release_10_23_2020.csv',), 1000, None, DAY * 1000,
                     'coveo_processed_view_'),
    'retailrocket': Dataset(read_retailrocket, ('events.csv',), 1000, 1442545200000,
                            7 * DAY * 1000, 'retailrocket_processed_view_'),
    'diginetica': Dataset(read_diginetica, ('train-item-views.csv',), 1000, None,
                          7 * DAY * 1000, 'diginetica_processed_view_'),
}
SPLITS = ['train_full', 'test', 'train_tr', 'train_valid']


def resolve_inputs(paths: list[Path], dataset: Dataset) -> list[Path]:
    """A directory stands for the data set's standard raw file names (optionally compressed);
    files are used as given, in the given order."""
    files = []
    for path in paths:
        if path.is_dir():
            for name in dataset.raw_files:
                found = [path / (name + s) for s in COMPRESSED_SUFFIXES if (path / (name + s)).is_file()]
                if not found:
                    raise PreprocessError(f'{path}: no {name} (or compressed variant) in this directory')
                files.append(found[0])
        elif path.is_file():
            files.append(path)
        else:
            raise PreprocessError(f'{path}: no such file or directory')
    return files


def run_rsc15(df: pd.DataFrame, ds: Dataset, outdir: Path, tsplit, tday) -> dict[str, pd.DataFrame]:
    """15.1: one-pass filter, session-end split with unseen test items removed, twice."""
    df = filter_once(df)
    if len(df) == 0:
        raise PreprocessError('no events left after filtering')
    train_full, test = split_by_session_end(df, tday, tsplit)
    train_tr, train_valid = split_by_session_end(train_full, tday)
    out = dict(zip(SPLITS, (train_full, test, train_tr, train_valid)))
    for name, part in out.items():
        write_tsv(part, outdir / f'{ds.prefix}{name}.txt')
    return out


def run_comparison(df: pd.DataFrame, ds: Dataset, outdir: Path, tsplit, tday) -> dict[str, pd.DataFrame]:
    """15.2: deduplicate, filter iteratively, split by session start, write stats.tsv."""
    df = filter_iteratively(remove_consecutive_repeats(df))
    if len(df) == 0:
        raise PreprocessError('no events left after filtering')
    if tsplit is None:
        tsplit = df['Time'].max()
    train_full, test = split_by_session_start(df, tsplit - tday)
    train_tr, train_valid = split_by_session_start(train_full, tsplit - 2 * tday)
    out = dict(zip(['full'] + SPLITS, (df, train_full, test, train_tr, train_valid)))
    for name, part in out.items():
        write_tsv(part, outdir / f'{ds.prefix}{name}.tsv')
    stats = [stats_row(f'{ds.prefix}{name}', part, ds.units_per_second) for name, part in out.items()]
    pd.DataFrame(stats, columns=STATS_COLUMNS).to_csv(outdir / 'stats.tsv', sep='\t', index=False)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', choices=sorted(DATASETS), help='which raw data set')
    p.add_argument('-p', '--path', required=True, nargs='+', type=Path,
                   help='raw data directory (standard file names) or raw file(s)')
    p.add_argument('-o', '--outdir', type=Path,
                   help='output directory (default: the raw data directory)')
    p.add_argument('--tsplit', type=float,
                   help='override the split time (Time units: s, or ms for coveo, retailrocket, '
                        'diginetica); default: the spec value or the max timestamp')
    p.add_argument('--tday', type=float,
                   help='override the test/validation window length (Time units)')
    p.add_argument('--chunksize', type=int, default=DEFAULT_CHUNKSIZE,
                   help='rows read at a time (default %(default)s)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ds = DATASETS[args.dataset]
    try:
        files = resolve_inputs(args.path, ds)
        outdir = args.outdir or (args.path[0] if args.path[0].is_dir() else args.path[0].parent)
        outdir.mkdir(parents=True, exist_ok=True)
        tsplit = ds.tsplit if args.tsplit is None else args.tsplit
        tday = ds.tday if args.tday is None else args.tday
        for f in files:
            print(f'Reading {f}')
        raw = ds.reader(files, args.chunksize)
        print(f'Read {len(raw)} events')
        run = run_rsc15 if args.dataset == 'rsc15' else run_comparison
        out = run(raw, ds, outdir, tsplit, tday)
    except (PreprocessError, OSError) as e:
        print(f'preprocess.py: error: {e}', file=sys.stderr)
        return 1
    for name, part in out.items():
        print_counts(name, part)
        if len(part) == 0:
            print(f'Warning: {name} is empty (check --tsplit/--tday for a partial data set)')
    print(f'Output written to {outdir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
