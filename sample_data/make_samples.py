"""Write the sample data of napari-masked-denoise (noisy images with their clean truth).

Usage::

    python sample_data/make_samples.py [FOLDER] [--seed N]

FOLDER defaults to the folder of this script. See README.md next to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_masked_denoise.samples import write_samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder",
        nargs="?",
        default=str(Path(__file__).resolve().parent),
        help="output folder (default: this script's folder)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise / structure seed (default 0)")
    args = parser.parse_args(argv)
    paths = write_samples(args.folder, seed=args.seed)
    for name, path in paths.items():
        print(f"{name:14s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
