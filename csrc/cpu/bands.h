// Work split shared by the CPU loss kernels: (plane, band of rows) tasks.
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

// Calls fn(task, plane, begin_row, end_row, scratch) for every (plane, band) task, task = plane * bands + band,
// in parallel; each chunk of tasks (about one per thread) makes its own scratch (work buffers) with
// make_scratch(). serial: every task on the calling thread (small inputs: waking a team costs more than the
// work).
template <typename MakeScratch, typename Fn>
void for_each_band(int64_t planes, int64_t bands, int64_t H, bool serial, MakeScratch make_scratch, Fn fn) {
  const int64_t tasks = planes * bands;
  at::parallel_for(0, tasks, serial ? std::max<int64_t>(tasks, 1) : 1, [&](int64_t begin, int64_t end) {
    auto scratch = make_scratch();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t band = task % bands;
      fn(task, task / bands, band * H / bands, (band + 1) * H / bands, scratch);
    }
  });
}

// The same without scratch: fn(task, plane, begin_row, end_row).
template <typename Fn>
void for_each_band(int64_t planes, int64_t bands, int64_t H, bool serial, Fn fn) {
  for_each_band(
      planes, bands, H, serial, [] { return 0; },
      [&](int64_t task, int64_t plane, int64_t i0, int64_t i1, int) { fn(task, plane, i0, i1); });
}

}  // namespace lowlight
