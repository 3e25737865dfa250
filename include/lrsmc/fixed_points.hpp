// Fixed points of the latent map of a low-rank RNN, method.md §7: the polynomial
// hyperplane-arrangement algorithm of §7.2 (exact also for degenerate arrangements), an exhaustive
// check over every activation pattern, and a damped Newton search for any nonlinearity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/config.hpp"

namespace lrsmc {

/// The deterministic latent map of method.md §1.1-1.2,
///
///     F(z) = a·z + n φ(m z + c; h),   z ∈ ℝ^R,
///
/// with relu φ = max(X − h, 0), clipped_relu φ = max(X + h, 0) − max(X, 0), tanh φ = tanh(X − h)
/// and identity φ = X − h (method.md §1.2). The constant current c is W_u·u for a constant input
/// u (method.md §7.1 folds it into h); leave it empty for an autonomous network.
struct PiecewiseLinearNetwork {
  int rank = 0;                         ///< R ≥ 1, latent dimension
  int num_hidden = 0;                   ///< N ≥ 1, units
  double decay = 0.9;                   ///< a, scalar decay (method.md §1.3), any finite value
  Nonlinearity nonlinearity = Nonlinearity::relu;
  std::vector<double> m;                ///< N×R row-major: m[i*R + r]
  std::vector<double> n;                ///< R×N row-major: n[r*N + i]
  std::vector<double> h;                ///< N, per-unit bias (its role depends on φ)
  std::vector<double> constant_current; ///< N, or empty for zero input
};

/// Classification of a fixed point by the eigenvalues λ of its R×R Jacobian J = a·I + n D m
/// (D = diag of the unit slopes), method.md §7.3, for the discrete-time map F.
enum class Stability {
  stable_node,      ///< all |λ| < 1, all λ real
  stable_spiral,    ///< all |λ| < 1, at least one complex pair
  saddle,           ///< some |λ| < 1 and some |λ| > 1
  unstable_node,    ///< all |λ| > 1, all λ real
  unstable_spiral,  ///< all |λ| > 1, at least one complex pair
  non_hyperbolic,   ///< some |λ| within 1e-9 of 1
};

/// "stable_node", "stable_spiral", "saddle", "unstable_node", "unstable_spiral",
/// "non_hyperbolic".
[[nodiscard]] std::string to_string(Stability value);

/// One fixed point z* = F(z*).
struct FixedPoint {
  std::vector<double> z;  ///< R, latent position
  /// Per-unit state at z* (N entries; empty for tanh and identity). Let X = m_i·z* + c_i.
  ///   relu:         0 off (X − h_i ≤ 0), 1 on (X − h_i > 0).
  ///   clipped_relu: 0 below both kinks (X ≤ min(−h_i, 0), φ = 0),
  ///                 1 on the ramp (min(−h_i, 0) < X < max(−h_i, 0), φ = X + h_i when h_i > 0,
  ///                   −X when h_i < 0, slope ±1),
  ///                 2 past the ramp, saturated (X ≥ max(−h_i, 0), φ = h_i, slope 0).
  /// A unit within the boundary tolerance of a kink takes the lower state (the derivative
  /// convention 1[X − h > 0] of method.md §1.2) and `on_boundary` is set.
  std::vector<std::int8_t> pattern;
  /// Eigenvalues of the Jacobian J = a·I + n D m for that pattern (tanh: D = diag(φ'(X))),
  /// R entries, sorted by decreasing modulus, then decreasing real and imaginary part.
  std::vector<double> eigenvalues_real;
  std::vector<double> eigenvalues_imag;
  Stability stability = Stability::non_hyperbolic;
  /// True when some unit sits on a kink (within tolerance): F is not differentiable there, and the
  /// eigenvalues and stability describe the lower-side region only.
  bool on_boundary = false;
};

struct FixedPointOptions {
  /// Boundary tolerance, relative: a point counts as inside a region when every unit's
  /// pre-activation is on the region's side of its kink or within tolerance·(1 + |c_i − θ| +
  /// ‖m_i‖₁‖z‖_∞) of it. Also the relative tolerance for detecting coincident vertices (more
  /// than R hyperplanes through a point). Finite and ≥ 0.
  double tolerance = 1e-9;
  /// Where find_fixed_points sweeps the arrangement (see choose_fixed_point_device):
  ///   cpu        the CPU, OpenMP over lines;
  ///   cuda       the GPU, one thread block per line (ranks up to 4; throws Error when lrsmc was
  ///              built without CUDA or no device answers, InvalidInput for rank > 4);
  ///   automatic  cuda when it pays off, else cpu (the default).
  /// The result is the same on both (FixedPointResult::device says which ran). Ignored by
  /// find_fixed_points_brute_force.
  BackendKind device = BackendKind::automatic;
};

/// Candidate regions above which device automatic picks CUDA: at 10^7 the CPU takes about
/// half a second (bench/RESULTS.md: R = 2, N = 4096 has 8.4·10^6), which outweighs starting the
/// GPU and copying; below it the CPU is as fast.
inline constexpr double fixed_points_cuda_min_regions = 1e7;

/// Σ_{k ≤ R} C(P, k), the number of regions of P hyperplanes in general position in ℝ^R, with
/// P = N (relu), 2N (clipped_relu) or 0 (identity, tanh; one region): the size of the
/// enumeration.
[[nodiscard]] double count_candidate_regions(const PiecewiseLinearNetwork& network);

/// The device find_fixed_points will use: cpu or cuda as asked; for automatic, cuda when the
/// network is relu or clipped_relu of rank ≤ 4, count_candidate_regions ≥
/// fixed_points_cuda_min_regions, and cuda_available() (asked only then), otherwise cpu.
[[nodiscard]] BackendKind choose_fixed_point_device(const PiecewiseLinearNetwork& network,
                                                    const FixedPointOptions& options);

struct FixedPointResult {
  /// Distinct fixed points (merged when within 1e-7·max(1, ‖z‖_∞) in every coordinate), sorted
  /// lexicographically by z. Deterministic: independent of the number of threads.
  std::vector<FixedPoint> fixed_points;
  std::int64_t num_vertices = 0;  ///< vertices of the hyperplane arrangement (see find_fixed_points)
  std::int64_t num_regions = 0;   ///< candidate regions whose affine system was solved
  std::int64_t num_solves = 0;    ///< linear solves: vertex solves plus region solves
  /// Candidate regions whose affine fixed-point system (a − 1)I + n D m is singular: such a
  /// region has no fixed point or a continuum of them; none are reported for it.
  std::int64_t num_singular_regions = 0;
  /// Where the arrangement was swept: cpu or cuda (never automatic).
  BackendKind device = BackendKind::cpu;
  /// cuda only: lines of the arrangement on which crossings coincide (more than R hyperplanes
  /// through a point, coincident hyperplanes); the vertices inside those clusters, whose order
  /// needs the symbolic perturbation, were solved by the CPU, all others by the GPU. 0 for
  /// networks in general position; about half the lines for clipped_relu without input, whose
  /// N hyperplanes {m_i·z = 0} all pass through the origin.
  std::int64_t num_host_lines = 0;
};

/// All fixed points of a relu, clipped_relu or identity network by the polynomial algorithm of
/// method.md §7.2. The N hyperplanes {z : m_i·z + c_i = h_i} (relu), or 2N hyperplanes
/// {m_i·z + c_i = −h_i} and {m_i·z + c_i = 0} (clipped_relu), cut ℝ^R into convex regions on
/// which F is affine. Each region is enumerated exactly once, at its lowest vertex along a fixed
/// generic direction; regions unbounded below are enumerated recursively on a hyperplane below
/// every vertex. Degenerate arrangements (parallel or coincident hyperplanes, more than R
/// hyperplanes through a point, normals spanning fewer than R dimensions, N < R) are handled by
/// symbolic perturbation of the offsets (simulation of simplicity) after projecting out the
/// directions no normal sees, so every region of the true arrangement is examined; perturbation
/// adds empty sliver regions, which can only yield fixed points that lie on a boundary. Then
/// num_vertices = C(N, r) and num_regions = Σ_{k≤r} C(N, k) for N relu hyperplanes in general
/// position with normals of rank r.
///
/// Each region's fixed point solves ((a − 1)I + n D m) z = −n D (c − θ); it is kept when it lies in
/// the closed region (within tolerance), so a fixed point on a boundary is found from every
/// adjacent region and reported once. Regions with a singular system are counted in
/// num_singular_regions and report nothing. Cost: one sorted sweep along each of the C(N, R−1)
/// lines of the arrangement, O(N^R log N), plus per region an R×R solve and a membership test
/// that stops at the first violated hyperplane (a few on average, N in the worst case); memory
/// O(N) per thread. Parallel over lines with OpenMP, or on a CUDA device (options.device): the
/// same lines, one thread block each — crossings sorted per line (cub::DeviceSegmentedSort), a
/// block scan of the activation changes for every segment's affine piece, and every vertex's
/// region solved and tested by its own thread, in double precision; vertices inside clusters of
/// coincident crossings are solved by the CPU code, and the host finishes (merging, eigenvalues,
/// stability, sorting) as for the CPU. So the fixed points, patterns and stability labels are those of the
/// CPU, and so are the counts, except that a fixed point whose distance from its region's
/// boundary equals the tolerance to within rounding may be kept by one and not the other (the
/// GPU sums a segment's affine piece in another order).
/// Throws InvalidInput for invalid sizes or non-finite values, and for tanh (use
/// find_fixed_points_numerical); with device cuda, Error when lrsmc was built without CUDA or no
/// device answers, InvalidInput for rank > 4, CudaError / OutOfMemory from the device.
[[nodiscard]] FixedPointResult find_fixed_points(const PiecewiseLinearNetwork& network,
                                                 const FixedPointOptions& options = {});

/// The same fixed points by solving the affine system of every activation pattern: 2^N for relu,
/// 3^N for clipped_relu (the reference check, and the baseline the polynomial algorithm beats).
/// num_regions = num_solves = number of patterns; num_vertices = 0. Throws InvalidInput as
/// find_fixed_points does, and when N > 20 (relu) or N > 13 (clipped_relu).
[[nodiscard]] FixedPointResult find_fixed_points_brute_force(
    const PiecewiseLinearNetwork& network, const FixedPointOptions& options = {});

/// Fixed points by damped Newton iterations on G(z) = F(z) − z from `num_starts` starting points
/// drawn uniformly (deterministically from `seed`) in the box |z_r| ≤ B_r, B_r =
/// Σ_i |n_ri|·A_i / max(|1 − a|, 1e-3) with A_i a bound on |φ_i|: 1 for tanh, |h_i| for
/// clipped_relu (so every fixed point lies in the box), and the heuristic 1 + |c_i| + |h_i| for
/// relu and identity. Works for every nonlinearity, with no guarantee of completeness. A run is
/// kept when ‖G(z)‖_∞ ≤ 1e-9·(1 + ‖z‖_∞); num_solves counts the Newton steps, num_vertices =
/// num_regions = 0. Throws InvalidInput as find_fixed_points does (tanh allowed) and when
/// num_starts < 1.
[[nodiscard]] FixedPointResult find_fixed_points_numerical(const PiecewiseLinearNetwork& network,
                                                           int num_starts, std::uint64_t seed);

}  // namespace lrsmc
