"""The original's run.py: `python run.py ...` in a checkout runs gru4rec.cli, the command
installed as `gru4rec-run` (its options: python run.py --help)."""
from gru4rec.cli import script

if __name__ == "__main__":
    script()
