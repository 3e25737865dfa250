"""lrsmc's CPU engines against a minimal PyTorch implementation of the same particle filter.

The shape is the paper's EEG setting: 64 channels, rank 3, 512 clipped-relu units, 10 trials of
50 steps, the optimal proposal for a linear-Gaussian read-out with full transition noise,
systematic resampling at every step. lrsmc is timed by bench_cpu_filter's BM_CpuEngineStep
(the packed float32 engine, lrsmc's default, and the float64 reference); PyTorch by the code
below, written as a framework user would: batched matrix products over all particles, float32,
autograd for the backward pass.

Each configuration (particles K, threads, forward or forward + backward) reports the median wall
time of one training step; with one thread, wall time is CPU time. A PyTorch configuration whose
autograd graph would not fit in this machine's memory is reported as such, not run.

    python bench/cpu_vs_pytorch.py --bench build/bench/bench_cpu_filter [--out results.json]

bench/run_cpu_vs_pytorch.sh sets up the environment (numpy and torch from PyPI) and runs this.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

TRIALS, STEPS, CHANNELS, RANK, HIDDEN = 10, 50, 64, 3, 512
PARTICLES = (10, 100, 1000, 10000)
THREADS = (1, 2)


def observations():
    """The benchmark's data: the values bench_cpu_filter's eeg_shaped_batch uses."""
    import numpy as np

    i = np.arange(TRIALS * STEPS * CHANNELS, dtype=np.float64)
    return (np.sin(0.37 * i) + 0.1 * np.cos(1.3 * i)).reshape(TRIALS, STEPS, CHANNELS)


class TorchFilter:
    """The rank-R RNN's particle filter with the optimal proposal, in batched PyTorch."""

    def __init__(self, torch, seed: int = 1):
        self.torch = torch
        generator = torch.Generator().manual_seed(seed)

        def parameter(*shape, scale):
            return (torch.randn(*shape, generator=generator) * scale).requires_grad_()

        self.m = parameter(HIDDEN, RANK, scale=1.0)
        self.n = parameter(HIDDEN, RANK, scale=1.0 / HIDDEN)
        self.h = parameter(HIDDEN, scale=0.1)
        self.decay_logit = torch.tensor(math.log(0.9 / 0.1), requires_grad=True)
        self.readout = parameter(RANK, CHANNELS, scale=1.0 / math.sqrt(RANK))
        self.bias = parameter(CHANNELS, scale=0.01)
        self.log_obs_std = torch.full((CHANNELS,), math.log(0.1), requires_grad=True)
        self.transition_chol = (0.1 * torch.eye(RANK)).requires_grad_()
        self.z_init = parameter(RANK, scale=0.0)
        self.initial_chol = torch.eye(RANK).requires_grad_()

    def parameters(self):
        return [self.m, self.n, self.h, self.decay_logit, self.readout, self.bias,
                self.log_obs_std, self.transition_chol, self.z_init, self.initial_chol]

    def elbo(self, x, particles: int, seed: int):
        torch = self.torch
        generator = torch.Generator().manual_seed(seed)
        trials, steps, channels = x.shape
        obs_var = torch.exp(2 * self.log_obs_std)
        a = torch.sigmoid(self.decay_logit)
        eye = torch.eye(RANK)
        total = x.new_zeros(())
        z = None
        for t in range(steps):
            if t == 0:
                mean = self.z_init.expand(trials, particles, RANK)
                chol = torch.tril(self.initial_chol)
            else:
                current = z @ self.m.T - self.h
                phi = torch.clamp(current, min=0.0) - torch.clamp(current - 1.0, min=0.0)
                mean = a * z + phi @ self.n
                chol = torch.tril(self.transition_chol)
            prior_cov = chol @ chol.T
            # Optimal proposal: p(z_t | z_{t-1}, x_t) and the predictive p(x_t | z_{t-1}).
            predictive = self.readout.T @ prior_cov @ self.readout + torch.diag(obs_var)
            predictive_chol = torch.linalg.cholesky(predictive)
            gain = torch.cholesky_solve(self.readout.T @ prior_cov, predictive_chol).T
            posterior_cov = (eye - gain @ self.readout.T) @ prior_cov
            posterior_chol = torch.linalg.cholesky(0.5 * (posterior_cov + posterior_cov.T))
            residual = x[:, t, None, :] - (mean @ self.readout + self.bias)
            whitened = torch.linalg.solve_triangular(
                predictive_chol, residual.reshape(-1, channels).T, upper=False
            ).T.reshape(trials, particles, channels)
            log_weight = -0.5 * (whitened**2).sum(-1) - torch.log(
                torch.diagonal(predictive_chol)
            ).sum() - 0.5 * channels * math.log(2 * math.pi)
            noise = torch.randn(trials, particles, RANK, generator=generator)
            proposed = mean + residual @ gain.T + noise @ posterior_chol.T
            total = total + (torch.logsumexp(log_weight, dim=1) - math.log(particles)).sum()
            # Systematic resampling (no gradient through the indices).
            with torch.no_grad():
                weights = torch.softmax(log_weight, dim=1)
                cumulative = torch.cumsum(weights, dim=1)
                cumulative[:, -1] = 1.0
                offset = torch.rand(trials, 1, generator=generator)
                positions = (torch.arange(particles) + offset) / particles
                ancestors = torch.searchsorted(cumulative, positions).clamp_(max=particles - 1)
            z = torch.gather(proposed, 1, ancestors[..., None].expand(-1, -1, RANK))
        return total / (trials * steps)


def torch_bytes(particles: int, backward: bool) -> float:
    """Memory of one step in PyTorch: per step and particle the currents, the clipped units and
    their masks, the predictions, residuals and whitened residuals (float32), kept for every
    step when autograd records the graph."""
    per_step = TRIALS * particles * (4 * HIDDEN + 4 * CHANNELS + 8 * RANK) * 4.0
    return per_step * (STEPS if backward else 2)


def time_torch(repeats: int) -> list:
    try:
        import torch
    except ImportError:
        print("cpu_vs_pytorch: PyTorch is not importable; only lrsmc is timed", file=sys.stderr)
        return []
    import numpy as np

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    x = torch.tensor(observations(), dtype=torch.float32)
    model = TorchFilter(torch)
    rows = []
    for threads in THREADS:
        torch.set_num_threads(threads)
        for backward in (False, True):
            for particles in PARTICLES:
                row = dict(engine="pytorch", particles=particles, threads=threads,
                           backward=backward)
                if torch_bytes(particles, backward) > 0.8 * memory:
                    row["note"] = (f"needs about {torch_bytes(particles, backward) / 2**30:.0f} GiB;"
                                   f" this machine has {memory / 2**30:.0f} GiB")
                    rows.append(row)
                    continue
                times = []
                for seed in range(repeats):
                    start = time.perf_counter()
                    if backward:
                        for p in model.parameters():
                            p.grad = None
                        model.elbo(x, particles, seed).backward()
                    else:
                        with torch.no_grad():
                            model.elbo(x, particles, seed)
                    times.append(time.perf_counter() - start)
                row["ms"] = 1e3 * float(np.median(times))
                rows.append(row)
                print(f"pytorch K={particles} threads={threads} backward={backward}: "
                      f"{row['ms']:.1f} ms", file=sys.stderr)
    return rows


# BM_CpuEngineStep's engine argument: 0 = float64, 1 = float32 in the kernels' order, 2 = packed.
ENGINES = {"0": "lrsmc float64", "2": "lrsmc float32"}


def time_lrsmc(bench: str, min_time: float) -> list:
    result = subprocess.run(
        [bench, "--benchmark_filter=BM_CpuEngineStep/.*/engine:[02]/", "--benchmark_format=json",
         f"--benchmark_min_time={min_time}", "--benchmark_repetitions=3",
         "--benchmark_report_aggregates_only=true"],
        check=True, capture_output=True, text=True)
    rows = []
    for entry in json.loads(result.stdout)["benchmarks"]:
        if entry.get("aggregate_name") != "median":
            continue
        fields = dict(part.split(":") for part in entry["run_name"].split("/") if ":" in part)
        rows.append(dict(engine=ENGINES[fields["engine"]],
                         particles=int(fields["particles"]), threads=int(fields["threads"]),
                         backward=fields["backward"] == "1", ms=entry["real_time"]))
    return rows


def table(rows: list) -> str:
    def find(engine, particles, threads, backward):
        for row in rows:
            if (row["engine"], row["particles"], row["threads"], row["backward"]) == (
                engine, particles, threads, backward):
                return row
        return None

    lines = ["| step | K | threads | lrsmc float32 (ms) | lrsmc float64 (ms) | PyTorch (ms) | "
             "PyTorch / float32 | float64 / float32 |",
             "|---|---|---|---|---|---|---|---|"]
    for backward in (False, True):
        for particles in PARTICLES:
            for threads in THREADS:
                fast = find("lrsmc float32", particles, threads, backward)
                double = find("lrsmc float64", particles, threads, backward)
                torch_row = find("pytorch", particles, threads, backward)

                def ms(row):
                    if row is None:
                        return "not run"
                    return f"{row['ms']:.1f}" if "ms" in row else row.get("note", "")

                def ratio(row):
                    if row is None or "ms" not in row or fast is None:
                        return "–"
                    return f"{row['ms'] / fast['ms']:.2f}"

                lines.append(f"| {'forward + backward' if backward else 'forward'} | {particles} "
                             f"| {threads} | {ms(fast)} | {ms(double)} | {ms(torch_row)} | "
                             f"{ratio(torch_row)} | {ratio(double)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", help="the bench_cpu_filter binary")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="Google Benchmark's minimum time per configuration, seconds")
    parser.add_argument("--torch-repeats", type=int, default=3)
    parser.add_argument("--out", help="write every timing as JSON here")
    parser.add_argument("--lrsmc-from", help="take lrsmc's timings from this earlier --out file "
                        "instead of running the benchmark again")
    arguments = parser.parse_args()
    if arguments.lrsmc_from:
        with open(arguments.lrsmc_from) as file:
            lrsmc_rows = [row for row in json.load(file) if row["engine"].startswith("lrsmc")]
    else:
        lrsmc_rows = time_lrsmc(arguments.bench, arguments.min_time)
    rows = lrsmc_rows + time_torch(arguments.torch_repeats)
    if arguments.out:
        with open(arguments.out, "w") as file:
            json.dump(rows, file, indent=1)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
