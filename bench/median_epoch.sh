# Sourced by the MPI benchmarks: median_epoch HISTORY prints the median of a fit's epoch times
# after the first (from <out>.history.csv's elapsed_seconds column).
median_epoch() {
  awk -F, 'NR > 1 { if (NR > 2) print $5 - last; last = $5 }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
