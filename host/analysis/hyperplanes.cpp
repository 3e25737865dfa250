// The network's hyperplanes and their arrangement in the essential space, with the box that bounds
// every region there (method.md §7.1, §7.2); the generic direction of the lowest-vertex rule.
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "analysis/fixed_points_internal.hpp"

namespace lrsmc::detail {
namespace {

/// Angle (and relative offset) within which hyperplanes are snapped onto exact degeneracy.
constexpr double kSnapTolerance = 1e-9;
/// Half-width of the search box relative to the largest distance of a hyperplane from the origin.
constexpr double kBoxScale = 1e6;

/// Snaps nearly degenerate hyperplanes onto exactly degenerate ones: normals parallel within
/// `snap` radians become parallel (the lowest index gives the direction), and parallel hyperplanes
/// whose offsets agree within snap·(distance + |offset|) coincide. The symbolic perturbation then
/// treats them exactly; otherwise their far-off or nearly coincident crossings could not be
/// ordered consistently in double precision. Only the enumeration uses the snapped hyperplanes:
/// regions are solved and tested with the network's own, so the snap can lose only regions
/// thinner than snap·distance, whose fixed points lie within tolerance of a neighbour's boundary.
void snap_near_degenerate(Level& level, double snap) {
  const int dim = level.dim;
  const int count = level.num_network;
  if (dim < 1 || count == 0) return;
  double largest = 0.0;
  for (int p = 0; p < count; ++p) largest = std::max(largest, level.norm[static_cast<std::size_t>(p)]);
  const auto valid = [&](int p) { return level.norm[static_cast<std::size_t>(p)] > 1e-6 * largest; };
  std::vector<double> unit(static_cast<std::size_t>(count * dim), 0.0);
  for (int p = 0; p < count; ++p) {
    if (!valid(p)) continue;
    for (int j = 0; j < dim; ++j) {
      unit[static_cast<std::size_t>(p * dim + j)] =
          level.w[static_cast<std::size_t>(p * dim + j)] / level.norm[static_cast<std::size_t>(p)];
    }
  }
  std::vector<int> parent(static_cast<std::size_t>(count));
  std::iota(parent.begin(), parent.end(), 0);
  const auto find = [&](int p) {
    while (parent[static_cast<std::size_t>(p)] != p) {
      parent[static_cast<std::size_t>(p)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(p)])];
      p = parent[static_cast<std::size_t>(p)];
    }
    return p;
  };
  if (dim >= 2) {
    // Near-parallel pairs: ±unit directions sorted by a generic projection; a pair within `snap`
    // has projections within `snap` for one choice of signs.
    const std::vector<double> axis = generic_direction(dim, 1);
    struct Entry {
      double key;
      int plane;
      double sign;
    };
    std::vector<Entry> entries;
    for (int p = 0; p < count; ++p) {
      if (!valid(p)) continue;
      const double key = dot(&unit[static_cast<std::size_t>(p * dim)], axis.data(), dim);
      entries.push_back({key, p, 1.0});
      entries.push_back({-key, p, -1.0});
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.key < b.key; });
    for (std::size_t i = 0; i < entries.size(); ++i) {
      for (std::size_t j = i + 1; j < entries.size() && entries[j].key - entries[i].key <= snap; ++j) {
        const int a = entries[i].plane;
        const int b = entries[j].plane;
        if (a == b) continue;
        double squared = 0.0;
        for (int k = 0; k < dim; ++k) {
          const double difference = entries[i].sign * unit[static_cast<std::size_t>(a * dim + k)] -
                                    entries[j].sign * unit[static_cast<std::size_t>(b * dim + k)];
          squared += difference * difference;
        }
        if (squared <= snap * snap) {
          const int root_a = find(a);
          const int root_b = find(b);
          parent[static_cast<std::size_t>(std::max(root_a, root_b))] = std::min(root_a, root_b);
        }
      }
    }
  } else {
    for (int p = 0; p < count; ++p) {
      if (valid(p)) parent[static_cast<std::size_t>(p)] = -1;  // marked: one group in 1-D
    }
    int root = -1;
    for (int p = 0; p < count; ++p) {
      if (parent[static_cast<std::size_t>(p)] != -1) continue;
      if (root < 0) root = p;
      parent[static_cast<std::size_t>(p)] = root;
    }
  }
  // Groups: copy the root's direction, then merge offsets along it.
  std::vector<std::vector<int>> groups(static_cast<std::size_t>(count));
  for (int p = 0; p < count; ++p) {
    if (valid(p)) groups[static_cast<std::size_t>(find(p))].push_back(p);
  }
  std::vector<std::pair<double, int>> offsets;
  for (int root = 0; root < count; ++root) {
    const std::vector<int>& members = groups[static_cast<std::size_t>(root)];
    if (members.size() < 2) continue;
    const double* direction = &unit[static_cast<std::size_t>(root * dim)];
    offsets.clear();
    for (const int p : members) {
      double* w = &level.w[static_cast<std::size_t>(p * dim)];
      const double norm = level.norm[static_cast<std::size_t>(p)];
      const double sign = dot(w, direction, dim) >= 0.0 ? 1.0 : -1.0;
      if (p != root) {
        for (int k = 0; k < dim; ++k) w[k] = sign * norm * direction[k];
      }
      // The hyperplane is {direction·y = sign·b/‖w‖}.
      offsets.emplace_back(sign * level.b[static_cast<std::size_t>(p)] / norm, p);
    }
    std::sort(offsets.begin(), offsets.end());
    for (std::size_t first = 0; first < offsets.size();) {
      std::size_t last = first + 1;
      while (last < offsets.size() &&
             offsets[last].first - offsets[last - 1].first <=
                 snap * (level.distance + std::abs(offsets[last].first))) {
        ++last;
      }
      if (last - first > 1) {
        // The lowest index keeps its offset; the others move onto it.
        std::size_t keep = first;
        for (std::size_t i = first; i < last; ++i) {
          if (offsets[i].second < offsets[keep].second) keep = i;
        }
        for (std::size_t i = first; i < last; ++i) {
          const int p = offsets[i].second;
          const double* w = &level.w[static_cast<std::size_t>(p * dim)];
          const double sign = dot(w, direction, dim) >= 0.0 ? 1.0 : -1.0;
          if (i != keep) level.b[static_cast<std::size_t>(p)] = sign * level.norm[static_cast<std::size_t>(p)] * offsets[keep].first;
        }
      }
      first = last;
    }
  }
}

}  // namespace

std::vector<double> generic_direction(int dim, std::uint64_t salt) {
  std::uint64_t state = 0x5EEDF00DULL + static_cast<std::uint64_t>(dim) * 7919ULL + salt * 104729ULL;
  std::vector<double> direction(static_cast<std::size_t>(dim));
  for (;;) {
    for (double& value : direction) value = 2.0 * uniform01(state) - 1.0;
    const double length = norm2(direction.data(), dim);
    if (length > 0.1) {
      for (double& value : direction) value /= length;
      return direction;
    }
  }
}

Hyperplanes build_hyperplanes(const PiecewiseLinearNetwork& network) {
  const int rank = network.rank;
  const int num_hidden = network.num_hidden;
  Hyperplanes planes;
  planes.rank = rank;
  planes.decay = network.decay;
  planes.base.assign(static_cast<std::size_t>(rank * rank + rank), 0.0);
  const auto add = [&](int unit, double theta, double sign) {
    const double offset = current(network, unit) - theta;
    const double* m_row = &network.m[static_cast<std::size_t>(unit) * rank];
    planes.unit.push_back(unit);
    planes.offset.push_back(offset);
    double abs_sum = 0.0;
    for (int r = 0; r < rank; ++r) {
      planes.normal.push_back(m_row[r]);
      abs_sum += std::abs(m_row[r]);
    }
    planes.abs_sum.push_back(abs_sum);
    for (int r = 0; r < rank; ++r) {
      const double n_value = sign * network.n[static_cast<std::size_t>(r) * num_hidden + unit];
      for (int s = 0; s < rank; ++s) planes.term.push_back(n_value * m_row[s]);
    }
    for (int r = 0; r < rank; ++r) {
      planes.term.push_back(sign * network.n[static_cast<std::size_t>(r) * num_hidden + unit] *
                                   offset);
    }
  };
  for (int unit = 0; unit < num_hidden; ++unit) {
    const double bias = network.h[static_cast<std::size_t>(unit)];
    switch (network.nonlinearity) {
      case Nonlinearity::relu:
        add(unit, bias, 1.0);
        break;
      case Nonlinearity::clipped_relu:
        add(unit, -bias, 1.0);
        add(unit, 0.0, -1.0);
        break;
      case Nonlinearity::identity:
        for (int r = 0; r < rank; ++r) {
          const double n_value = network.n[static_cast<std::size_t>(r) * num_hidden + unit];
          for (int s = 0; s < rank; ++s) {
            planes.base[static_cast<std::size_t>(r * rank + s)] +=
                n_value * network.m[static_cast<std::size_t>(unit) * rank + s];
          }
          planes.base[static_cast<std::size_t>(rank * rank + r)] += n_value * (current(network, unit) - bias);
        }
        break;
      case Nonlinearity::tanh:
        break;
    }
  }
  planes.num_network = planes.count();
  return planes;
}

Level essential_level(const PiecewiseLinearNetwork& network, Hyperplanes& planes) {
  const int rank = network.rank;
  const int num_network = planes.count();
  Level level;
  level.num_network = num_network;
  if (num_network == 0) return level;
  Eigen::MatrixXd normals(num_network, rank);
  for (int p = 0; p < num_network; ++p) {
    for (int r = 0; r < rank; ++r) normals(p, r) = planes.normal[static_cast<std::size_t>(p * rank + r)];
  }
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(normals, Eigen::ComputeThinV);
  const Eigen::VectorXd& singular = svd.singularValues();
  int dim = 0;
  for (Eigen::Index i = 0; i < singular.size(); ++i) {
    if (singular(i) > kSingularTolerance * singular(0)) ++dim;
  }
  level.dim = dim;
  const int num_planes = num_network + 2 * dim;
  level.b.assign(static_cast<std::size_t>(num_planes), 0.0);
  level.norm.assign(static_cast<std::size_t>(num_planes), 0.0);
  level.w.assign(static_cast<std::size_t>(num_planes) * static_cast<std::size_t>(dim), 0.0);
  double largest_norm = 0.0;
  for (int p = 0; p < num_network; ++p) {
    level.b[static_cast<std::size_t>(p)] = -planes.offset[static_cast<std::size_t>(p)];
    for (int j = 0; j < dim; ++j) {
      // Full rank keeps the original coordinates (no rounding from a rotation).
      level.w[static_cast<std::size_t>(p * dim + j)] =
          dim == rank ? normals(p, j) : normals.row(p).dot(svd.matrixV().col(j));
    }
    // level.w is empty when every normal is zero (dim = 0): data() + 0, never w[0].
    level.norm[static_cast<std::size_t>(p)] =
        norm2(level.w.data() + static_cast<std::size_t>(p) * static_cast<std::size_t>(dim), dim);
    largest_norm = std::max(largest_norm, level.norm[static_cast<std::size_t>(p)]);
  }
  if (dim == 0) return level;
  double distance = 0.0;
  for (int p = 0; p < num_network; ++p) {
    const double norm = level.norm[static_cast<std::size_t>(p)];
    if (norm > 1e-6 * largest_norm) {
      distance = std::max(distance, std::abs(level.b[static_cast<std::size_t>(p)]) / norm);
    }
  }
  level.distance = distance;
  snap_near_degenerate(level, kSnapTolerance);
  // An irrational factor keeps the faces off hyperplanes of hand-made networks.
  level.box = kBoxScale * (distance > 0.0 ? distance : 1.0) * 1.0471975511965976;
  for (int j = 0; j < dim; ++j) {
    for (const double sign : {1.0, -1.0}) {
      const auto p = static_cast<std::size_t>(level.count() - 2 * dim + 2 * j + (sign > 0.0 ? 0 : 1));
      level.w[p * static_cast<std::size_t>(dim) + static_cast<std::size_t>(j)] = sign;
      level.b[p] = level.box;
      level.norm[p] = 1.0;
      // The face has no term and is not a unit: zero normal and term in Hyperplanes.
      planes.unit.push_back(-1);
      planes.offset.push_back(0.0);
      planes.abs_sum.push_back(0.0);
      for (int r = 0; r < rank; ++r) planes.normal.push_back(0.0);
      for (int i = 0; i < planes.stride(); ++i) planes.term.push_back(0.0);
    }
  }
  return level;
}

}  // namespace lrsmc::detail
