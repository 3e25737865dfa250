"""Co-smoothing, forward prediction and PSTHs of a model fitted to real spikes, with the command line:
Steinmetz et al. (2019) session 01, the 177 active VISp neurons (../shared/data/steinmetz).

The trials are split 80/20 (the fixed permutation of bench/steinmetz_encoder.py). `lrsmc fit` trains
on the training trials with every neuron; `lrsmc evaluate` scores the held-out trials with a fixed
quarter of the neurons hidden from the posterior (co_bps), the last 10 bins (100 ms) predicted from
the bins before them (fp_bps), PSTHs by stimulus condition (the pair of contrasts), spike statistics
of generated data and the smoothed bits per spike of the held-in neurons.

    python bench/steinmetz_cosmoothing.py OUT_DIR [--lrsmc build-cpu/lrsmc] [--epochs 100]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

BIN_SECONDS = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "steinmetz"))
    parser.add_argument("--lrsmc", default="build-cpu/lrsmc")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        sys.exit(f"{args.data} is absent: the Steinmetz recording is needed")
    os.makedirs(args.out, exist_ok=True)

    counts = np.load(os.path.join(args.data, "session01_spks.npy"))  # (trials, neurons, bins) uint8
    with open(os.path.join(args.data, "session01_brain_area.txt")) as handle:
        areas = np.array([line.strip() for line in handle])
    counts = np.ascontiguousarray(counts.transpose(0, 2, 1)).astype(np.float64)  # trials, bins, neurons
    counts = counts[:, :, (counts.sum(axis=(0, 1)) > 0) & (areas == "VISp")]
    with open(os.path.join(args.data, "session01_trials.csv")) as handle:
        rows = list(csv.DictReader(handle))
    pairs = [(float(r["contrast_left"]), float(r["contrast_right"])) for r in rows]
    labels = {pair: i for i, pair in enumerate(sorted(set(pairs)))}

    order = np.random.default_rng(0).permutation(len(counts))
    split = int(round(0.8 * len(counts)))
    train, test = order[:split], order[split:]
    neurons = counts.shape[2]
    held = np.sort(np.random.default_rng(1).permutation(neurons)[: neurons // 4])
    np.save(os.path.join(args.out, "train.npy"), counts[train])
    np.save(os.path.join(args.out, "test.npy"), counts[test])
    np.save(os.path.join(args.out, "conditions.npy"), np.array([labels[pairs[i]] for i in test], dtype=np.float64))

    def run(*command):
        start = time.perf_counter()
        completed = subprocess.run([args.lrsmc, *map(str, command)], cwd=args.out, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"lrsmc {' '.join(map(str, command))} failed:\n{completed.stderr}")
        print(completed.stdout, end="")
        return time.perf_counter() - start

    fit_seconds = run("fit", "--data", "train.npy", "--observation", "poisson", "--link", "softplus",
                      "--rank", 3, "--hidden", 128, "--nonlinearity", "clipped_relu", "--transition-noise", "diag",
                      "--initial-noise", "diag", "--init-initial-std", 0.1,
                      "--proposal", "bootstrap", "--particles", 64, "--epochs", args.epochs, "--batch-size", 4,
                      "--optimizer", "adam", "--lr", 2e-3, "--lr-end", 2e-4, "--seed", 0, "--device", "cpu",
                      "-q", "--out", "model.npz")
    evaluate_seconds = run("evaluate", "--model", "model.npz", "--data", "test.npy", "--particles", 1000,
                           "--repeats", 5, "--held-out-channels", ",".join(map(str, held)), "--forward-steps", 10,
                           "--conditions", "conditions.npy", "--bin-seconds", BIN_SECONDS, "--device", "cpu",
                           "--out-json", "evaluation.json")
    evaluation = json.load(open(os.path.join(args.out, "evaluation.json")))
    summary = {
        "recording": "Steinmetz session01, active VISp neurons",
        "neurons": neurons,
        "train_trials": len(train),
        "test_trials": len(test),
        "held_out_neurons": held.tolist(),
        "conditions": len(labels),
        "fit_seconds": fit_seconds,
        "evaluate_seconds": evaluate_seconds,
        "metrics": {name: {"median": m["median"], "mad": m["mad"], "baseline": m["baseline"]["median"],
                           "baseline_name": m["baseline"]["name"], **({"note": m["note"]} if "note" in m else {})}
                    for name, m in evaluation["metrics"].items()},
        "elbo_per_step": evaluation["elbo_per_step"],
    }
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    print(json.dumps(summary["metrics"], indent=2))


if __name__ == "__main__":
    main()
