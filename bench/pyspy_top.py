"""Summarise a py-spy ``--format raw`` profile: the functions that hold the most samples.

py-spy record -f raw -o prof.txt -- python -m bench.profile_api ... --time-only
python -m bench.pyspy_top prof.txt [--match switchboard-code-only] [--top 40]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(args.path) as raw:
        for line in raw:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            frames = stack.split(";")
            for frame in set(frames):
                if args.match in frame:
                    inclusive[frame] += n
            own[frames[-1]] += n
    print(f"{total} samples\n-- inclusive")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {frame}")
    print("-- own")
    for frame, n in own.most_common(args.top // 2):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
