"""A Poisson teacher in the paper's spiking setting and two students trained on its counts with the
same budget: one with the encoder proposal, one with the bootstrap proposal.

The teacher is the demo's rank-2 limit-cycle network (lrsmc.demo_data) widened to 40 relu units
(every unit twice, n halved: the same latent dynamics), with diagonal noise and 40 Poisson
channels whose rates are softplus(4·ηᵢ − 3), ηᵢ = bᵢᵀ z / s for random unit vectors bᵢ and the
latents' standard deviation s. It draws 400 training trials of 200 steps and 100 held-out trials.
Each model is scored on the held-out trials with 1000 particles and the same seed: the teacher
with the bootstrap proposal (it has no encoder), each student with its own proposal. The
teacher's fixed points and each student's are listed with their stability.

Usage: python bench/poisson_teacher.py OUT_DIR [--epochs E] [--particles K] [--threads T]
       [--optimizer radam|adam] [--lr LR] [--lr-end LR_END]   (default: RAdam 1e-3 -> 1e-4)
Needs the lrsmc package (scripts/test_python.sh builds one into build/python-venv).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import lrsmc


def make_teacher(seed: int = 7) -> lrsmc.Model:
    demo = lrsmc.demo_data()
    small = demo.teacher
    config = lrsmc.ModelConfig(
        rank=2, num_hidden=40, num_channels=40, nonlinearity=small.config.nonlinearity,
        transition_noise="diag", initial_noise="diag", observation="poisson", link="softplus",
    )
    teacher = lrsmc.Model.initialise(config, seed=seed)
    m, n = small.get("m"), small.get("n")
    teacher.set("m", np.vstack([m, m]))
    teacher.set("n", np.hstack([n, n]) / 2)
    teacher.set("h", np.concatenate([small.get("h"), small.get("h")]))
    teacher.set("decay_logit", small.get("decay_logit"))
    teacher.set("z_init", small.get("z_init"))
    teacher.set("transition_noise", np.full(2, 2 * np.log(0.1)))
    teacher.set("initial_noise", np.full(2, 2 * np.log(1.0)))
    latents = lrsmc.sample(small, trials=50, steps=200, seed=seed).latents
    scale = float(latents.std())
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(2, 40))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    teacher.set("readout_weight", 4 * directions / scale)
    teacher.set("readout_bias", np.full(40, -3.0))
    return teacher


def stability_counts(model: lrsmc.Model) -> dict:
    """The number of fixed points of each stability ("stable", "unstable", ...)."""
    counts: dict = {}
    for point in lrsmc.fixed_points(model):
        counts[point.stability] = counts.get(point.stability, 0) + 1
    return {"fixed_points": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--optimizer", default="radam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-end", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    teacher = make_teacher()
    lrsmc.save_model(teacher, os.path.join(args.out, "teacher.npz"))
    train = lrsmc.sample(teacher, trials=400, steps=200, seed=1).observations
    test = lrsmc.sample(teacher, trials=100, steps=200, seed=2).observations
    np.save(os.path.join(args.out, "train.npy"), train)
    np.save(os.path.join(args.out, "test.npy"), test)

    def score(model: lrsmc.Model, proposal: str) -> float:
        return lrsmc.filter(model, test, particles=1000, seed=7, proposal=proposal,
                            threads=args.threads).elbo

    results = {"teacher": {"held_out_elbo": score(teacher, "bootstrap"), **stability_counts(teacher)},
               "mean_count": float(train.mean())}
    for proposal in ("encoder", "bootstrap"):
        rnn = lrsmc.LowRankRNN(
            rank=2, num_hidden=40, nonlinearity=teacher.config.nonlinearity, observation="poisson",
            link="softplus", transition_noise="diag", initial_noise="diag", proposal=proposal,
            encoder_kernels=(21, 11, 1), particles=args.particles, epochs=args.epochs, batch_size=10,
            optimizer=args.optimizer, learning_rate=args.lr, learning_rate_end=args.lr_end, seed=3, device="cpu",
            threads=args.threads, verbose=False,
        )
        start = time.perf_counter()
        rnn.fit(train)
        seconds = time.perf_counter() - start
        lrsmc.save_model(rnn.model_, os.path.join(args.out, f"student_{proposal}.npz"))
        results[proposal] = {
            "held_out_elbo": score(rnn.model_, proposal),
            "training_seconds": seconds,
            "final_train_elbo": float(rnn.history_["train_elbo"][-1]),
            "train_elbo_every_10_epochs": [float(v) for v in rnn.history_["train_elbo"][::10]],
            **stability_counts(rnn.model_),
        }
        print(proposal, results[proposal], flush=True)
    teacher_elbo = results["teacher"]["held_out_elbo"]
    for proposal in ("encoder", "bootstrap"):
        gap = teacher_elbo - results[proposal]["held_out_elbo"]
        results[proposal]["gap_percent"] = 100 * gap / abs(teacher_elbo)
    print(json.dumps(results, indent=2))
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
