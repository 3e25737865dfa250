#!/usr/bin/env python3
"""Fits time ∝ N^p to the fixed-point benchmark's JSON output, per rank and method.

Usage: bench/fit_exponent.py RESULT.json [--min-n 256]
Prints a Markdown table of the times and, per (method, R), the least-squares slope of
log(time) against log(N) over the sizes with N ≥ --min-n (brute force: over every size,
as a base: time ∝ b^N). Standard library only.
"""
import argparse
import json
import math
import sys
from collections import defaultdict


def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file")
    parser.add_argument("--min-n", type=int, default=256,
                        help="smallest N used in the fit of the arrangement algorithm")
    args = parser.parse_args()
    try:
        with open(args.json_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        sys.exit(f"fit_exponent: cannot read {args.json_file}: {error}")
    series = defaultdict(list)  # (method, R) -> [(N, seconds, regions, fixed points)]
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    for bench in data.get("benchmarks", []):
        if bench.get("run_type") == "aggregate":
            continue
        method = "arrangement" if "Arrangement" in bench["name"] else "brute force"
        seconds = bench["real_time"] * scale[bench["time_unit"]]
        series[(method, int(bench["R"]))].append(
            (int(bench["N"]), seconds, int(bench["regions"]), int(bench["fixed_points"])))
    print("| method | R | N | time (ms) | regions or patterns solved |")
    print("| --- | --- | --- | --- | --- |")
    for key in sorted(series):
        for n, seconds, regions, _ in sorted(series[key]):
            print(f"| {key[0]} | {key[1]} | {n} | {seconds * 1e3:.3g} | {regions} |")
    print()
    for key in sorted(series):
        points = sorted(series[key])
        if key[0] == "arrangement":
            used = [(n, t) for n, t, _, _ in points if n >= args.min_n]
            if len(used) >= 2:
                p = slope([math.log(n) for n, _ in used], [math.log(t) for _, t in used])
                print(f"arrangement R={key[1]}: time ∝ N^{p:.2f} "
                      f"(N = {used[0][0]} … {used[-1][0]}; regions grow as N^{key[1]})")
        else:
            used = [(n, t) for n, t, _, _ in points]
            if len(used) >= 2:
                p = slope([n for n, _ in used], [math.log(t) for _, t in used])
                print(f"brute force R={key[1]}: time ∝ {math.exp(p):.2f}^N "
                      f"(N = {used[0][0]} … {used[-1][0]})")


if __name__ == "__main__":
    main()
