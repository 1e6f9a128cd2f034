"""The original's paropt.py: `python paropt.py ...` in a checkout runs gru4rec.tuning.cli, the
command installed as `gru4rec-paropt` (its options: python paropt.py --help)."""
from gru4rec.tuning.cli import script

if __name__ == "__main__":
    script()
