"""Leave-one-out split for the sequence-aware setting: a user's whole history is one sequence.

    python -m gru4rec.leave_one_out INPUT OUTDIR [-sk SessionId -ik ItemId -tk Time]

For every user, the last item is the test target, the one before it the validation target and
the rest is training; this is the protocol of the sequence-aware papers that use GRU4Rec as a
baseline (Amazon Beauty and the like). Users with fewer than 3 items have no room for both
targets: all their items go to training only (they still teach the model, but are not evaluated).

INPUT is either
  * pairs: one `user item` pair per line, whitespace separated, no header, each user's lines in
    chronological order (the BERT4Rec Beauty file); line order is time order, or
  * this package's input format (TAB separated with a header, optionally .gz, or a pickled or
    parquet DataFrame) whose session column (-sk) holds the user id; each user's events are
    ordered by the time column (-tk), equal times keeping file order.
A text file whose first line names the session and item columns is read as the latter.

OUTDIR receives three files in this package's input format (TAB separated, header
`SessionId	ItemId	Time`), where SessionId is the user id and Time the item's 0-based
position in the user's whole history, so sorting any union of them by (SessionId, Time)
gives back the history in order:
  train.tsv  each user's history without its last two items (all items of short users)
  valid.tsv  one row per evaluated user: the second-to-last item
  test.tsv   one row per evaluated user: the last item
Train a model on train.tsv; evaluate the validation targets from the state after the
train.tsv items, and the test targets from the state after train.tsv + valid.tsv items
(`gru4rec.sequence_eval.evaluate_next_item`). Users appear in order of first appearance.
"""
import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .cli_args import Parser
from .data import DataError, check_output_dir, item_ids, load

COLUMNS = ["SessionId", "ItemId", "Time"]
SPLITS = ("train", "valid", "test")


def read_histories(path, session_key="SessionId", item_key="ItemId", time_key="Time"):
    """Interactions as a frame with columns SessionId, ItemId (strings) and Time (0-based
    position in the user's history), sorted by user (first appearance) and position."""
    path = Path(path)
    if _is_pairs(path, session_key, item_key):
        df = _read_pairs(path)
        return histories(df, "SessionId", "ItemId", "Time")
    df = load(path, session_key, item_key, time_key)
    return histories(df, session_key, item_key, time_key)


def _is_pairs(path, session_key, item_key):
    if path.suffix in (".pickle", ".pkl", ".parquet") or not path.is_file():
        return False  # load() reads these, or reports the missing file
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            first = f.readline().split()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read {path}: {e}") from None
    return not (session_key in first and item_key in first)


def _read_pairs(path):
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except Exception as e:  # parse errors (e.g. a line with three fields): one line for the user
        raise DataError(f"Cannot read {path} as 'user item' pairs: {str(e).splitlines()[0]}") from None
    if df.shape[1] != 2 or df.isna().any().any():
        raise DataError(f"{path}: every line must hold a 'user item' pair (a user id and an item id)")
    return pd.DataFrame({"SessionId": df[0], "ItemId": df[1], "Time": np.arange(len(df))})


def histories(df, session_key, item_key, time_key):
    """The events of `df` as ordered user histories (see read_histories); users keep their
    order of first appearance, a user's events are ordered by time (stable)."""
    if len(df) == 0:
        raise DataError("the data has no interactions")
    users = df[session_key].to_numpy()
    first = pd.Index(pd.unique(users)).get_indexer(users)
    order = np.lexsort((np.arange(len(df)), df[time_key].to_numpy(), first))
    out = pd.DataFrame({"SessionId": users[order],
                        "ItemId": item_ids(df[item_key], item_key).to_numpy()[order]})
    out["Time"] = out.groupby("SessionId", sort=False).cumcount().to_numpy()
    return out


def split(hist):
    """{'train', 'valid', 'test'} frames of ordered histories (from read_histories)."""
    n = hist.groupby("SessionId", sort=False)["Time"].transform("size").to_numpy()
    pos = hist["Time"].to_numpy()
    evaluated = n >= 3
    valid = evaluated & (pos == n - 2)
    test = evaluated & (pos == n - 1)
    parts = {"train": ~(valid | test), "valid": valid, "test": test}
    return {name: hist[mask].reset_index(drop=True) for name, mask in parts.items()}


def summary(parts):
    """One line per split: interactions, users, items, and for the targets how many are
    items that do not occur in train (a model trained on train.tsv cannot rank them)."""
    known = set(parts["train"]["ItemId"])
    lines = []
    for name in SPLITS:
        df = parts[name]
        line = (f"{name}: {len(df)} interactions, {df['SessionId'].nunique()} users, "
                f"{df['ItemId'].nunique()} items")
        if name != "train":
            line += f", {int((~df['ItemId'].isin(known)).sum())} targets not in train"
        lines.append(line)
    return lines


def write(parts, outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        parts[name][COLUMNS].to_csv(outdir / f"{name}.tsv", sep="\t", index=False)


def main(argv=None):
    p = Parser(prog="python -m gru4rec.leave_one_out",
                                description="Leave-one-out split of user histories (last item: test, "
                                            "the one before: validation, the rest: training).")
    p.add_argument("input", help="'user item' pairs (one per line, chronological) or a TSV/pickle/parquet file")
    p.add_argument("outdir", help="folder for train.tsv, valid.tsv and test.tsv")
    p.add_argument("-sk", "--session_key", default="SessionId", help="user id column of a TSV input")
    p.add_argument("-ik", "--item_key", default="ItemId", help="item id column of a TSV input")
    p.add_argument("-tk", "--time_key", default="Time", help="time column of a TSV input")
    args = p.parse_args(argv)
    try:
        check_output_dir(args.outdir)
        hist = read_histories(args.input, args.session_key, args.item_key, args.time_key)
        parts = split(hist)
        write(parts, args.outdir)
    except (DataError, OSError) as e:
        print(f"ERROR. {e}", file=sys.stderr)
        return 1
    print(f"{len(hist)} interactions, {hist['SessionId'].nunique()} users, {hist['ItemId'].nunique()} items")
    print("\n".join(summary(parts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
