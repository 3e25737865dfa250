"""Encoder against bootstrap proposal on Neuropixels spike counts (Steinmetz et al. 2019, session 01
of ../shared/data/steinmetz): all 720 active neurons, and the 177 active VISp neurons.

Each recording's trials are split 80/20 (a fixed permutation); two students with the same
architecture, particles, epochs and learning-rate schedule are trained on the training trials,
one with the encoder proposal (kernels 21,11,1 with 64,64 channels, causal, the paper's spiking
encoder) and one with the bootstrap proposal. Reported per student: the held-out trials' ELBO per
step with 1000 particles (each student with its own proposal), the Pearson correlation over
neurons of the mean rate of 500 generated trials against the held-out trials', the mean rate of
the first 50 ms after stimulus onset (generated and recorded, Hz), and the CPU time per epoch.

Usage: python bench/steinmetz_encoder.py OUT_DIR [--data DIR] [--epochs E] [--hidden N]
       [--batch-size B] [--optimizer radam|adam] [--lr LR] [--lr-end LR_END]
       (default: batches of 16, RAdam 1e-3 -> 1e-4)
Needs the lrsmc package (scripts/test_python.sh builds one into build/python-venv).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import lrsmc

BIN_SECONDS = 0.01


def recordings(folder: str) -> dict:
    counts = np.load(os.path.join(folder, "session01_spks.npy"))  # (trials, neurons, bins) uint8
    with open(os.path.join(folder, "session01_brain_area.txt")) as handle:
        areas = np.array([line.strip() for line in handle])
    counts = np.ascontiguousarray(counts.transpose(0, 2, 1)).astype(np.int32)  # trials, bins, neurons
    active = counts.sum(axis=(0, 1)) > 0
    return {
        "session01_all": counts[:, :, active],
        "session01_VISp": counts[:, :, active & (areas == "VISp")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "steinmetz"))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--optimizer", default="radam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-end", type=float, default=1e-4)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for name, counts in recordings(args.data).items():
        order = np.random.default_rng(0).permutation(len(counts))
        split = int(round(0.8 * len(counts)))
        train, test = counts[order[:split]], counts[order[split:]]
        recorded_rate = test.mean(axis=(0, 1)) / BIN_SECONDS
        results[name] = {"trials": [len(train), len(test)], "neurons": int(counts.shape[2]),
                         "recorded_onset_rate_hz": float(test[:, :5].mean() / BIN_SECONDS),
                         "recorded_mean_rate_hz": float(recorded_rate.mean())}
        for proposal in ("encoder", "bootstrap"):
            rnn = lrsmc.LowRankRNN(
                rank=3, num_hidden=args.hidden, nonlinearity="clipped_relu", observation="poisson",
                link="softplus", transition_noise="diag", initial_noise="diag", init_initial_std=0.1,
                proposal=proposal, encoder_kernels=(21, 11, 1), particles=args.particles,
                epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, learning_rate=args.lr,
                learning_rate_end=args.lr_end, seed=3, device="cpu", verbose=False,
            )
            start = time.perf_counter()
            rnn.fit(train)
            seconds = time.perf_counter() - start
            lrsmc.save_model(rnn.model_, os.path.join(args.out, f"{name}_{proposal}.npz"))
            held_out = lrsmc.filter(rnn.model_, test, particles=1000, seed=7, proposal=proposal).elbo
            generated = lrsmc.sample(rnn.model_, trials=500, steps=counts.shape[1], seed=11).observations
            generated_rate = generated.mean(axis=(0, 1)) / BIN_SECONDS
            results[name][proposal] = {
                "held_out_elbo": held_out,
                "rate_correlation": float(np.corrcoef(generated_rate, recorded_rate)[0, 1]),
                "generated_onset_rate_hz": float(generated[:, :5].mean() / BIN_SECONDS),
                "generated_mean_rate_hz": float(generated_rate.mean()),
                "seconds_per_epoch": seconds / args.epochs,
                "final_train_elbo": float(rnn.history_["train_elbo"][-1]),
                "train_elbo_every_10_epochs": [float(v) for v in rnn.history_["train_elbo"][::10]],
            }
            print(name, proposal, results[name][proposal], flush=True)
    print(json.dumps(results, indent=2))
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
