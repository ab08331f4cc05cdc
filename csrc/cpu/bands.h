// Work split shared by the CPU loss kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace lowlight {

// Bands per plane: enough (plane, band) tasks for every thread even at batch 1, in a count that splits
// evenly over the threads, each band at least min_rows high so its halo stays a small overhead.
inline int64_t bands_per_plane(int64_t planes, int64_t H, int64_t min_rows) {
  const int64_t threads = at::get_num_threads();
  const int64_t max_bands = std::max<int64_t>(1, H / min_rows);
  int64_t bands = 1;
  while (bands < max_bands && (planes * bands < threads || (planes * bands) % threads != 0)) ++bands;
  return bands;
}

}  // namespace lowlight
