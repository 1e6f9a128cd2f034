"""Reproduce the published GRU4Rec results of one data set with its best parameters.

Trains on the data set's `train_full` split with `paramfiles/<dataset>_*_best.py`, evaluates
on `test` (conservative ties, cut-offs 1, 5, 10, 20) and prints our metrics beside the
original README's (spec 16.2) with the relative difference; writes the table as Markdown.

    python examples/reproduce.py diginetica --data ../shared/data/diginetica
    python examples/reproduce.py retailrocket --data out/retailrocket --epochs 3

`--data` holds the splits written by `examples/preprocess.py` (`<prefix>train_full.tsv`,
`<prefix>test.tsv`) or plain `train_full.tsv[.gz]` / `test.tsv[.gz]`.
"""
import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CUTOFFS = (1, 5, 10, 20)
PARAMFILES = {
    "rsc15": "rsc15_xe_shared_100_best.py",
    "yoochoose": "yoochoose_xe_shared_best.py",
    "rees46": "rees46_xe_shared_best.py",
    "coveo": "coveo_bprmax_shared_best.py",
    "retailrocket": "retailrocket_bprmax_shared_best.py",
    "diginetica": "diginetica_bprmax_shared_best.py",
}
# The original README's results table (Recall@k, MRR@k for k = 1, 5, 10, 20).
PUBLISHED = {
    "rsc15": ((0.1845, 0.1845), (0.4906, 0.2954), (0.6218, 0.3130), (0.7283, 0.3205)),
    "yoochoose": ((0.1829, 0.1829), (0.4478, 0.2783), (0.5715, 0.2949), (0.6789, 0.3024)),
    "rees46": ((0.1114, 0.1114), (0.3010, 0.1778), (0.4135, 0.1928), (0.5293, 0.2008)),
    "coveo": ((0.0513, 0.0513), (0.1496, 0.0852), (0.2212, 0.0946), (0.3135, 0.1010)),
    "retailrocket": ((0.1274, 0.1274), (0.3237, 0.1977), (0.4207, 0.2107), (0.5186, 0.2175)),
    "diginetica": ((0.0725, 0.0725), (0.2369, 0.1288), (0.3542, 0.1442), (0.4995, 0.1542)),
}
PREFIX = {"rsc15": "rsc15_", "yoochoose": "yoochoose_processed_view_", "rees46": "rees46_processed_view_userbased_",
          "coveo": "coveo_processed_view_", "retailrocket": "retailrocket_processed_view_",
          "diginetica": "diginetica_processed_view_"}


def find_split(folder, dataset, split):
    """The file of one split in `folder`, under the preprocessing script's or the plain name."""
    for name in (f"{PREFIX[dataset]}{split}", split):
        for ext in (".tsv", ".tsv.gz", ".txt"):
            if (folder / f"{name}{ext}").is_file():
                return folder / f"{name}{ext}"
    raise FileNotFoundError(f"no {split} split for {dataset} in {folder}")


def table(dataset, ours):
    """Markdown rows: metric, ours, published, relative difference."""
    lines = ["| metric | ours | published | rel. diff |", "|---|---|---|---|"]
    for (c, (pr, pm)) in zip(CUTOFFS, PUBLISHED[dataset]):
        for label, got, pub in ((f"Recall@{c}", ours.recall[c], pr), (f"MRR@{c}", ours.mrr[c], pm)):
            lines.append(f"| {label} | {got:.4f} | {pub:.4f} | {100 * (got - pub) / pub:+.1f}% |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(PARAMFILES))
    ap.add_argument("--data", type=Path, required=True, help="folder with the train_full and test splits")
    ap.add_argument("--epochs", type=int, help="override n_epochs of the parameter file")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--out", type=Path, help="Markdown output (default: results_<dataset>.md in the cwd)")
    args = ap.parse_args()

    from gru4rec import GRU4Rec, messages
    from gru4rec.data import DataError, load
    from gru4rec.evaluation import evaluate
    messages.to_stdout()  # the SET and epoch lines while it trains, as the original prints them
    try:
        train_path, test_path = find_split(args.data, args.dataset, "train_full"), find_split(args.data, args.dataset, "test")
        model = GRU4Rec.from_param_file(ROOT / "paramfiles" / PARAMFILES[args.dataset],
                                        device=args.device, backend=args.backend)
        if args.epochs:
            model.set_params(n_epochs=args.epochs)
        train, test = load(train_path), load(test_path)
    except (OSError, ValueError, DataError) as e:
        sys.exit(f"error: {e}")
    t0 = time.time()
    model.fit(train)
    train_s = time.time() - t0
    t0 = time.time()
    ours = evaluate(model, test, cut_off=CUTOFFS, mode="conservative")
    eval_s = time.time() - t0
    md = table(args.dataset, ours)
    header = (f"## {args.dataset}: ours vs. published (conservative ties, {ours.n} test events)\n\n"
              f"Trained {model.params.n_epochs} epochs on `{train_path}` in {train_s:.0f} s, evaluated on "
              f"`{test_path}` in {eval_s:.1f} s; {platform.processor() or platform.machine()}, device "
              f"{args.device}, backend {args.backend}.\n\n")
    print(md)
    print(f"training {train_s:.1f} s, evaluation {eval_s:.1f} s")
    out = args.out or Path(f"results_{args.dataset}.md")
    out.write_text(header + md + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
