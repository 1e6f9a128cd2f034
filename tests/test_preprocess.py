"""Tests of examples/preprocess.py (spec section 15).

Tiny synthetic inputs with outputs derived by hand (comments give the derivation) check the
rules; the raw samples in ../shared/data/raw-samples check invariants on real data.
"""

import gzip
import importlib.util
import re
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from .conftest import RAW_SAMPLES as RAW, ROOT, needs

SCRIPT = ROOT / 'examples' / 'preprocess.py'
DAY, HOUR, MIN = 86400, 3600, 60

_spec = importlib.util.spec_from_file_location('examples_preprocess', SCRIPT)
pp = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pp
_spec.loader.exec_module(pp)

needs_raw = needs(RAW)


# ------------------------------------------------------------------------------------ helpers

def run(capsys, *args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    rc = pp.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def printed_counts(stdout):
    """{set name: (events, sessions, items)} from the printed statistics lines."""
    found = re.findall(r'^(\w+)\tEvents: (\d+)\tSessions: (\d+)\tItems: (\d+)$', stdout, re.M)
    return {name: tuple(map(int, nums)) for name, *nums in found}


def load(path):
    df = pd.read_csv(path, sep='\t', dtype={'SessionId': 'int64', 'ItemId': 'int64'})
    assert list(df.columns) == ['SessionId', 'ItemId', 'Time']
    return df


def counts(df):
    return len(df), df.SessionId.nunique(), df.ItemId.nunique()


def items_by_session(df):
    """{session id: [items in file order]}."""
    return {s: list(g.ItemId) for s, g in df.groupby('SessionId', sort=True)}


def sessions_as_events(df):
    """Sorted list of sessions, each a tuple of (time, item) in file order; independent of the
    (computed) session ids."""
    return sorted(tuple(zip(g.Time, g.ItemId)) for _, g in df.groupby('SessionId'))


def epoch(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def yoo_line(session, ts_ms, item):
    """A yoochoose-clicks.dat line for a time given in epoch ms."""
    t = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return f'{session},{t.strftime("%Y-%m-%dT%H:%M:%S")}.{ts_ms % 1000:03d}Z,{item},0\n'


def frame(rows):
    return pd.DataFrame(rows, columns=['SessionId', 'ItemId', 'Time'])


# ------------------------------------------------------------------- pipeline building blocks

def test_consecutive_repeats_removed_after_sorting_by_session_time_item():
    df = frame([(1, 5, 10), (1, 5, 11), (1, 6, 12), (1, 5, 13),  # (5,5,6,5) -> (5,6,5)
                (2, 9, 20), (2, 3, 20),  # same time: sorted by item -> (3,9)
                (3, 4, 31), (3, 4, 30)])  # unsorted input, repeat -> (4) at time 30
    out = pp.remove_consecutive_repeats(df)
    assert list(map(tuple, out.to_numpy())) == [
        (1, 5, 10), (1, 6, 12), (1, 5, 13), (2, 3, 20), (2, 9, 20), (3, 4, 30)]


def chain_data():
    """S1-S5 = [P,Q]; S6-S9 = [X,P]; S10 = [X,R]. Supports P=9, Q=5, X=5, R=1."""
    P, Q, X, R = 1, 2, 3, 4
    rows = [(s, i, 10 * s + k) for s in range(1, 6) for k, i in enumerate([P, Q])]
    rows += [(s, i, 10 * s + k) for s in range(6, 10) for k, i in enumerate([X, P])]
    rows += [(10, X, 100), (10, R, 101)]
    return frame(rows)


def test_iterative_filter_runs_until_stable():
    # round 1: no 1-long session; R (support 1) dropped -> S10 = [X]
    # round 2: S10 dropped -> X support 4 -> X dropped -> S6-S9 = [P]
    # round 3: S6-S9 dropped (P support 5 stays); round 4 changes nothing.
    out = pp.filter_iteratively(chain_data())
    assert items_by_session(out) == {s: [1, 2] for s in range(1, 6)}


def test_rsc15_filter_is_one_pass():
    # drop 1-long sessions (none), items < 5 (R), sessions < 2 (S10): X keeps support 4
    out = pp.filter_once(chain_data())
    assert items_by_session(out) == {**{s: [1, 2] for s in range(1, 6)},
                                     **{s: [3, 1] for s in range(6, 10)}}
    assert (out.ItemId == 3).sum() == 4


def test_sessions_from_gaps_one_hour_strictly_exceeded():
    user = np.array([1, 1, 1, 1, 2, 2])
    time = np.array([0, 3600, 7201, 7202, 7203, 7204])
    # gap 3600 = not exceeding; 3601 > 3600 -> new; user change -> new
    assert pp.sessions_from_gaps(user, time, 3600).tolist() == [1, 1, 2, 2, 3, 3]


# ----------------------------------------------------------------------------- rsc15 (15.1)

def D(day, h, m):
    """Epoch ms of 2014-04-<day> h:m:00.250 UTC."""
    return epoch(2014, 4, day, h, m) * 1000 + 250


RSC15_SESSIONS = {  # session: [(time ms, item), ...]; items 1,2 common, 3 test-only, 4 one-pass
    1: [(D(1, 10, 0), 1), (D(1, 10, 1), 2)],
    2: [(D(2, 10, 0), 1), (D(2, 10, 1), 2)],
    3: [(D(3, 10, 0), 1), (D(3, 10, 1), 1), (D(3, 10, 2), 2)],  # repeat kept (no dedup)
    4: [(D(4, 10, 0), 2), (D(4, 10, 1), 1)],
    11: [(D(5, 10, 0), 4), (D(5, 10, 1), 1)],
    12: [(D(5, 11, 0), 4), (D(5, 11, 1), 1)],
    13: [(D(5, 12, 0), 4), (D(5, 12, 1), 1)],
    14: [(D(5, 13, 0), 4), (D(5, 13, 1), 1)],
    15: [(D(5, 14, 0), 4), (D(5, 14, 1), 9)],  # 9 rare -> [4] -> dropped; 4 keeps support 4
    16: [(D(5, 15, 0), 1)],  # length 1
    18: [(D(8, 20, 0), 6), (D(8, 20, 1), 1), (D(8, 20, 2), 2), (D(8, 20, 3), 6)],
    19: [(D(8, 21, 0), 6), (D(8, 21, 1), 6), (D(8, 21, 2), 2)],
    20: [(D(8, 22, 0), 6), (D(8, 22, 1), 6)],
    5: [(D(8, 23, 0), 1), (D(8, 23, 1), 2)],
    6: [(D(9, 11, 0), 1), (D(9, 13, 0), 2)],  # crosses the boundary, ends after it -> test
    10: [(D(10, 7, 0), 2), (D(10, 7, 1), 3), (D(10, 7, 2), 1)],
    9: [(D(10, 8, 0), 3), (D(10, 8, 1), 2), (D(10, 8, 2), 3)],
    8: [(D(10, 9, 0), 3), (D(10, 9, 1), 1)],
    7: [(D(10, 11, 0), 1), (D(10, 11, 30), 3), (D(10, 12, 0), 2)],  # last event = tmax
}


def write_clicks(path, sessions, opener=open):
    with opener(path, 'wt') as f:
        for s, events in sessions.items():
            for t, i in events:
                f.write(yoo_line(s, t, i))


def test_rsc15_by_hand(tmp_path, capsys):
    write_clicks(tmp_path / 'yoochoose-clicks.dat', RSC15_SESSIONS)
    rc, out, err = run(capsys, 'rsc15', '-p', tmp_path, '-o', tmp_path / 'out')
    assert rc == 0, err
    res = {n: load(tmp_path / 'out' / f'rsc15_{n}.txt') for n in pp.SPLITS}
    # one pass: 16 (length 1) and 15 ([4, 9] -> [4]) go; item 4 keeps support 4.
    # tmax = day 10 12:00:00.250 -> sessions ending before day 9 12:00:00.250 are train.
    train = {s: [i for _, i in RSC15_SESSIONS[s]]
             for s in (1, 2, 3, 4, 11, 12, 13, 14, 18, 19, 20, 5)}
    assert items_by_session(res['train_full']) == train
    assert (res['train_full'].ItemId == 4).sum() == 4
    # test: item 3 is not in train -> 7 = [1,2], 8 = [1] (dropped), 9 = [2] (dropped),
    # 10 = [2,1]; session 6 starts before the boundary but ends after it -> test, whole.
    assert items_by_session(res['test']) == {6: [1, 2], 7: [1, 2], 10: [2, 1]}
    # validation: train max = day 8 23:01 -> train_tr = sessions ending before day 7 23:01;
    # item 6 is not in train_tr: 18 -> [1,2], 19 -> [2] dropped, 20 -> [] dropped, 5 kept.
    assert items_by_session(res['train_tr']) == {s: train[s] for s in (1, 2, 3, 4, 11, 12, 13, 14)}
    assert items_by_session(res['train_valid']) == {18: [1, 2], 5: [1, 2]}
    # the time is float epoch seconds; file order is kept
    assert res['train_full'].Time.iloc[0] == pytest.approx(epoch(2014, 4, 1, 10, 0) + 0.25, abs=1e-6)
    assert res['train_full'].SessionId.drop_duplicates().tolist() == [1, 2, 3, 4, 11, 12, 13, 14, 18, 19, 20, 5]
    assert printed_counts(out) == {'train_full': (28, 12, 4), 'test': (6, 3, 2),
                                   'train_tr': (17, 8, 3), 'train_valid': (4, 2, 2)}


# ------------------------------------------------------------------------- yoochoose (15.2)

def test_yoochoose_by_hand(tmp_path, capsys):
    T = epoch(2014, 4, 1) * 1000  # day 1 00:00 in ms
    d, h, m = DAY * 1000, HOUR * 1000, MIN * 1000
    clicks = {
        1: [(T + 100, 7), (T + 1200, 7), (T + 2000, 8)],  # repeat -> [7, 8] at seconds 0, 2
        2: [(T + h + 10200, 8), (T + h + 10900, 7)],  # same second -> sorted by item: [7, 8]
        3: [(T + d, 7), (T + d + m, 8), (T + d + 2 * m, 7)],
        4: [(T + 2 * d, 8), (T + 2 * d + 5 * m, 7)],
        6: [(T + 5 * h, 7), (T + 5 * h + m, 9)],  # 9 rare -> [7] -> dropped in round 2
        5: [(T + 6 * h, 8)],  # length 1
    }
    test = {
        101: [(T + 2 * d + 12 * h, 7), (T + 2 * d + 12 * h + m, 8)],
        102: [(T + 2 * d + 23 * h, 8), (T + 2 * d + 23 * h + 30 * m, 7), (T + 3 * d + 10 * m, 8)],
    }
    write_clicks(tmp_path / 'yoochoose-clicks.dat', clicks)
    write_clicks(tmp_path / 'yoochoose-test.dat.gz', test, opener=gzip.open)
    rc, out, err = run(capsys, 'yoochoose', '-p', tmp_path, '-o', tmp_path / 'out')
    assert rc == 0, err
    pre = tmp_path / 'out' / 'yoochoose_processed_view_'
    res = {n: load(f'{pre}{n}.tsv') for n in ['full'] + pp.SPLITS}
    s = T // 1000
    assert items_by_session(res['full']) == {1: [7, 8], 2: [7, 8], 3: [7, 8, 7], 4: [8, 7],
                                             101: [7, 8], 102: [8, 7, 8]}
    assert res['full'].Time[res['full'].SessionId == 1].tolist() == [s, s + 2]
    assert res['full'].Time[res['full'].SessionId == 2].tolist() == [s + HOUR + 10] * 2
    # tmax = day 4 00:10 -> test = sessions starting >= day 3 00:10 -> 101, 102;
    # validation boundary day 2 00:10 -> train_tr = 1, 2, 3; train_valid = 4
    assert sorted(res['test'].SessionId.unique()) == [101, 102]
    assert sorted(res['train_full'].SessionId.unique()) == [1, 2, 3, 4]
    assert sorted(res['train_tr'].SessionId.unique()) == [1, 2, 3]
    assert sorted(res['train_valid'].SessionId.unique()) == [4]
    assert printed_counts(out) == {'full': (14, 6, 2), 'train_full': (9, 4, 2), 'test': (5, 2, 2),
                                   'train_tr': (7, 3, 2), 'train_valid': (2, 1, 2)}


# ---------------------------------------------------------------------- retailrocket (15.2)

RR_T = 1442545200000  # tsplit of the spec (ms)
RR_W = 7 * DAY * 1000  # tday = 7 days
B1, B2 = RR_T - RR_W, RR_T - 2 * RR_W  # test and validation boundaries
H, M = HOUR * 1000, MIN * 1000
RR_VIEWS = {  # visitor: [(time, item)]; hand-derived fate in the comments
    1: [(B2 - 2 * H, 1), (B2 - 105 * M, 99), (B2 - 90 * M, 2), (B2 - H, 1)],  # 99 rare -> [1,2,1]
    2: [(B2 - 10 * M, 1), (B2 + 10 * M, 2), (B2 + 20 * M, 1)],  # in train_full, not tr/valid
    3: [(B2 - 20 * M, 1), (B2 - 10 * M, 2), (B2 + 10 * M, 1)],  # train_tr truncated to [1,2]
    4: [(B2 + H, 2), (B2 + 160 * M, 1)],  # bridged by an addtocart at B2+110min -> 1 session
    5: [(B1 - 20 * M, 1), (B1 - 10 * M, 2), (B1 + 10 * M, 1)],  # train_full [1,2], valid
    6: [(B1 - 10 * M, 2), (B1 + 10 * M, 1)],  # train_full gets 1 event -> dropped; not test
    7: [(B1, 1), (B1 + 10 * M, 2)],  # starts exactly at the boundary -> test
    8: [(B1 + H, 2), (B1 + 65 * M, 2), (B1 + 70 * M, 1), (B1 + 80 * M, 2)],  # dedup -> [2,1,2]
    9: [(B2 - 3 * H, 1)],  # single event -> dropped
    10: [(B2 - 10 * H, 1), (B2 - 570 * M, 2), (B2 - 5 * H, 1), (B2 - 270 * M, 2)],  # 2 sessions
}


def test_retailrocket_by_hand(tmp_path, capsys):
    rows = [(t, v, 'view', i, '') for v, ev in RR_VIEWS.items() for t, i in ev]
    rows += [(B2 + 110 * M, 4, 'addtocart', 2, ''), (B2 - 4 * H, 11, 'transaction', 1, 7)]
    rows.reverse()  # the raw file is not sorted
    raw = pd.DataFrame(rows, columns=['timestamp', 'visitorid', 'event', 'itemid', 'transactionid'])
    raw.to_csv(tmp_path / 'events.csv.gz', index=False)
    rc, out, err = run(capsys, 'retailrocket', '-p', tmp_path, '-o', tmp_path / 'out')
    assert rc == 0, err
    pre = tmp_path / 'out' / 'retailrocket_processed_view_'
    res = {n: load(f'{pre}{n}.tsv') for n in ['full'] + pp.SPLITS}
    V = {v: [e for e in ev if e[1] != 99] for v, ev in RR_VIEWS.items()}
    V[8] = [e for e in V[8] if e[0] != B1 + 65 * M]
    ten_a, ten_b = V[10][:2], V[10][2:]
    expect = {
        'full': [V[1], V[2], V[3], V[4], V[5], V[6], V[7], V[8], ten_a, ten_b],
        'train_full': [V[1], V[2], V[3], V[4], V[5][:2], ten_a, ten_b],
        'test': [V[7], V[8]],
        'train_tr': [V[1], V[3][:2], ten_a, ten_b],
        'train_valid': [V[4], V[5][:2]],
    }
    for name, sessions in expect.items():
        assert sessions_as_events(res[name]) == sorted(tuple(s) for s in sessions), name
    # session ids are consistent across the files
    full_ids = {tuple(zip(g.Time, g.ItemId))[0]: s for s, g in res['full'].groupby('SessionId')}
    for name in pp.SPLITS:
        for sid, g in res[name].groupby('SessionId'):
            assert full_ids[(g.Time.iloc[0], g.ItemId.iloc[0])] == sid
    assert printed_counts(out) == {'full': (25, 10, 2), 'train_full': (17, 7, 2),
                                   'test': (5, 2, 2), 'train_tr': (9, 4, 2),
                                   'train_valid': (4, 2, 2)}
    stats = pd.read_csv(tmp_path / 'out' / 'stats.tsv', sep='\t').set_index('Dataset')
    assert list(stats.columns) == pp.STATS_COLUMNS[1:]
    test = stats.loc['retailrocket_processed_view_test']
    assert (test.NumEvents, test.NumSessions, test.NumItems) == (5, 2, 2)
    assert (test.MinSessionLength, test.MaxSessionLength, test.AvgSessionLength) == (2, 3, 2.5)
    assert (test['MinSessionTime (sec)'], test['MaxSessionTime (sec)']) == (600, 1200)
    assert test.AvgItemViews == 2.5
    assert test.NumDays == pytest.approx(80 / 1440, abs=1e-4)  # B1 .. B1 + 80 min
    assert test.StartTime == '2015-09-11 03:00:00'  # B1 = 2015-09-18 03:00 UTC - 7 days


# ------------------------------------------------------------------------------ coveo (15.2)

def test_coveo_by_hand(tmp_path, capsys):
    t0, d = 1_600_000_000_000, DAY * 1000
    A, B = 'a' * 64, 'b' * 64
    rows = [  # session_id_hash, product_action, product_sku_hash, time
        ('u1', 'detail', B, t0), ('u1', None, None, t0 + 50 * M),  # pageview bridges the gap
        ('u1', 'detail', A, t0 + 100 * M),
        ('u1', 'detail', A, t0 + 161 * M), ('u1', 'detail', B, t0 + 162 * M),  # 61 min: new
        ('u2', 'detail', A, t0 + 10 * M), ('u2', 'detail', B, t0 + 70 * M),  # exactly 1 h: same
        ('u3', 'add', A, t0 + 5 * M),  # not a detail view
        ('u4', 'detail', B, t0 + 36 * H), ('u4', 'detail', A, t0 + 36 * H + M),
        ('u5', 'detail', A, t0 + 3 * d), ('u5', 'detail', B, t0 + 3 * d + M),
    ]
    raw = pd.DataFrame(rows, columns=['session_id_hash', 'product_action', 'product_sku_hash',
                                      'server_timestamp_epoch_ms'])
    raw.insert(1, 'event_type', np.where(raw.product_action.isna(), 'pageview', 'event_product'))
    raw['hashed_url'] = 'x'
    raw.to_csv(tmp_path / 'release_10_23_2020.csv', index=False)
    rc, out, err = run(capsys, 'coveo', '-p', tmp_path, '-o', tmp_path / 'out')
    assert rc == 0, err
    pre = tmp_path / 'out' / 'coveo_processed_view_'
    res = {n: load(f'{pre}{n}.tsv') for n in ['full'] + pp.SPLITS}
    full = res['full']
    code = {full.ItemId[full.Time == t0].item(): B, full.ItemId[full.Time == t0 + 100 * M].item(): A}
    assert len(code) == 2 and set(full.ItemId) == set(code)  # hashes -> two distinct ints
    named = {n: sorted(tuple((t, code[i]) for t, i in s) for s in sessions_as_events(df))
             for n, df in res.items()}
    u1a = ((t0, B), (t0 + 100 * M, A))
    u1b = ((t0 + 161 * M, A), (t0 + 162 * M, B))
    u2 = ((t0 + 10 * M, A), (t0 + 70 * M, B))
    u4 = ((t0 + 36 * H, B), (t0 + 36 * H + M, A))
    u5 = ((t0 + 3 * d, A), (t0 + 3 * d + M, B))
    # tmax = t0+3d+1min: test = starts >= t0+2d+1min -> u5; valid = starts >= t0+d+1min -> u4
    assert named == {'full': sorted([u1a, u1b, u2, u4, u5]), 'train_full': sorted([u1a, u1b, u2, u4]),
                     'test': [u5], 'train_tr': sorted([u1a, u1b, u2]), 'train_valid': [u4]}


# ------------------------------------------------------------------ rees46 and diginetica readers

def test_rees46_reader_sessions_on_views_only(tmp_path):
    rows = [('2019-10-01 00:00:00 UTC', 'view', 5, 1), ('2019-10-01 00:50:00 UTC', 'cart', 5, 1),
            ('2019-10-01 01:40:00 UTC', 'view', 6, 1),  # 100 min after the previous view
            ('2019-10-01 00:10:00 UTC', 'view', 7, 2), ('2019-10-01 01:10:00 UTC', 'view', 5, 2)]
    raw = pd.DataFrame(rows, columns=['event_time', 'event_type', 'product_id', 'user_id'])
    raw.insert(3, 'category_id', 1)
    raw['user_session'] = 'x'
    raw.to_csv(tmp_path / 'r.csv', index=False)
    df = pp.read_rees46([tmp_path / 'r.csv'], chunksize=2)
    t = epoch(2019, 10, 1)
    assert sessions_as_events(df) == [((t, 5),), ((t + 600, 7), (t + 4200, 5)), ((t + 6000, 6),)]


def test_diginetica_reader_time_from_session_min_date(tmp_path):
    (tmp_path / 'train-item-views.csv').write_text(
        'sessionId;userId;itemId;timeframe;eventdate\n'
        '1;NA;10;1000;2016-01-02\n1;NA;11;5000;2016-01-01\n2;7;10;20;2016-03-01\n')
    df = pp.read_diginetica([tmp_path / 'train-item-views.csv'], chunksize=2)
    jan1, mar1 = epoch(2016, 1, 1) * 1000, epoch(2016, 3, 1) * 1000
    assert list(map(tuple, df.to_numpy())) == [(1, 10, jan1 + 1000), (1, 11, jan1 + 5000),
                                               (2, 10, mar1 + 20)]


# ------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize('content, message', [
    (None, 'no such file'), ('', 'empty'), ('sessionId;itemId;eventdate\n1;2;2016-01-01\n', 'timeframe'),
    ('sessionId;userId;itemId;timeframe;eventdate\n', 'no data rows'),
    ('sessionId;userId;itemId;timeframe;eventdate\n1;NA;x;5;2016-01-01\n', 'cannot parse'),
])
def test_bad_input_one_line_exit_1(tmp_path, capsys, content, message):
    path = tmp_path / 'train-item-views.csv'
    if content is not None:
        path.write_text(content)
    rc, out, err = run(capsys, 'diginetica', '-p', path, '-o', tmp_path)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and message in err


def test_cli_error_has_no_traceback(tmp_path):
    (tmp_path / 'events.csv').write_text('timestamp,visitorid,itemid\n1,2,3\n')
    p = subprocess.run([sys.executable, SCRIPT, 'retailrocket', '-p', tmp_path],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().count('\n') == 0 and 'event' in p.stderr
    assert 'Traceback' not in p.stderr


# ------------------------------------------------------------------------ real raw samples

def check_lengths_and_counts(res, out):
    for name, df in res.items():
        assert df.groupby('SessionId').size().min() >= 2, name
    assert printed_counts(out) == {n: counts(df) for n, df in res.items()}


@needs_raw
def test_rsc15_raw_sample(tmp_path, capsys):
    src = RAW / 'yoochoose-clicks_sample.dat'
    rc, out, err = run(capsys, 'rsc15', '-p', src, '-o', tmp_path)
    assert rc == 0, err
    res = {n: load(tmp_path / f'rsc15_{n}.txt') for n in pp.SPLITS}
    check_lengths_and_counts(res, out)
    raw = pd.read_csv(src, header=None, usecols=[0, 1, 2], names=['SessionId', 'Time', 'ItemId'])
    raw['Time'] = (pd.to_datetime(raw.Time, format='%Y-%m-%dT%H:%M:%S.%fZ')
                   - pd.Timestamp('1970-01-01')).dt.total_seconds()
    # the one-pass filter of 15.1 written out plainly
    multi = raw[raw.groupby('SessionId').SessionId.transform('size') > 1]
    support = multi.groupby('ItemId').size()
    once = multi[multi.ItemId.isin(support.index[support >= 5])]
    once = once[once.groupby('SessionId').SessionId.transform('size') >= 2]
    tmax = once.Time.max()
    ends = once.groupby('SessionId').Time.max()
    train_ids = set(ends.index[ends < tmax - DAY])
    assert items_by_session(res['train_full']) == items_by_session(once[once.SessionId.isin(train_ids)])
    assert set(res['test'].SessionId) <= set(ends.index[ends >= tmax - DAY])
    assert set(res['test'].ItemId) <= set(res['train_full'].ItemId)
    assert set(res['train_valid'].ItemId) <= set(res['train_tr'].ItemId)
    tr_end = res['train_full'].Time.max() - DAY
    assert (res['train_tr'].groupby('SessionId').Time.max() < tr_end).all()
    assert (res['train_valid'].groupby('SessionId').Time.max() >= tr_end).all()


def check_comparison_splits(res, boundary, boundary2):
    full = res['full']
    assert full.groupby('ItemId').size().min() >= 5
    starts = full.groupby('SessionId').Time.min()
    test_ids = set(starts.index[starts >= boundary])
    assert set(res['test'].SessionId) == test_ids
    assert len(res['test']) == full.SessionId.isin(test_ids).sum()  # whole sessions
    assert (res['train_full'].Time < boundary).all()
    before = full[full.Time < boundary]
    before = before[before.groupby('SessionId').SessionId.transform('size') >= 2]
    assert len(res['train_full']) == len(before)
    assert (res['train_tr'].Time < boundary2).all()
    valid_ids = set(starts.index[starts >= boundary2]) & set(res['train_full'].SessionId)
    assert set(res['train_valid'].SessionId) == valid_ids
    assert len(res['train_valid']) + len(res['train_tr']) <= len(res['train_full'])


def run_comparison_sample(tmp_path, capsys, dataset, src, *extra):
    rc, out, err = run(capsys, dataset, '-p', src, '-o', tmp_path, *extra)
    assert rc == 0, err
    prefix = pp.DATASETS[dataset].prefix
    res = {n: load(tmp_path / f'{prefix}{n}.tsv') for n in ['full'] + pp.SPLITS}
    check_lengths_and_counts(res, out)
    stats = pd.read_csv(tmp_path / 'stats.tsv', sep='\t').set_index('Dataset')
    for n, df in res.items():
        row = stats.loc[prefix + n]
        assert (row.NumEvents, row.NumSessions, row.NumItems) == counts(df)
    return res


@needs_raw
def test_yoochoose_raw_sample(tmp_path, capsys):
    res = run_comparison_sample(tmp_path, capsys, 'yoochoose', RAW / 'yoochoose-clicks_sample.dat')
    tmax = res['full'].Time.max()
    check_comparison_splits(res, tmax - DAY, tmax - 2 * DAY)
    assert len(res['test']) > 0 and len(res['train_valid']) > 0


@needs_raw
def test_diginetica_raw_sample(tmp_path, capsys):
    res = run_comparison_sample(tmp_path, capsys, 'diginetica',
                                RAW / 'diginetica_train-item-views_head.csv')
    tmax, week = res['full'].Time.max(), 7 * DAY * 1000
    check_comparison_splits(res, tmax - week, tmax - 2 * week)
    assert len(res['test']) > 0 and len(res['train_valid']) > 0


@needs_raw
def test_rees46_raw_sample(tmp_path, capsys):
    src = RAW / 'rees46_2019-Oct_head.csv.gz'
    # the head covers 00:00-02:50 of Oct 1; the spec's tsplit (Dec 1) would leave test empty
    tsplit, tday = epoch(2019, 10, 1, 2, 50), 600
    res = run_comparison_sample(tmp_path, capsys, 'rees46', src, '--tsplit', tsplit, '--tday', tday)
    check_comparison_splits(res, tsplit - tday, tsplit - 2 * tday)
    assert len(res['test']) > 0 and len(res['train_valid']) > 0
    # every output event is a raw view event of that item at that time
    raw = pd.read_csv(src, usecols=['event_time', 'event_type', 'product_id'])
    raw = raw[raw.event_type == 'view']
    t = (pd.to_datetime(raw.event_time, format='%Y-%m-%d %H:%M:%S UTC')
         - pd.Timestamp('1970-01-01')) // pd.Timedelta(seconds=1)
    assert set(zip(res['full'].Time, res['full'].ItemId)) <= set(zip(t, raw.product_id))


@needs_raw
def test_rees46_raw_sample_default_split_puts_all_in_train(tmp_path, capsys):
    rc, out, err = run(capsys, 'rees46', '-p', RAW / 'rees46_2019-Oct_head.csv.gz', '-o', tmp_path)
    assert rc == 0, err
    c = printed_counts(out)  # all events are before 2019-11-30 (tsplit - 1 day)
    assert c['test'][0] == 0 and c['train_valid'][0] == 0
    assert c['train_full'] == c['full'] == c['train_tr']
