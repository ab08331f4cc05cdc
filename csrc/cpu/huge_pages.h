// Photo-sized outputs backed by transparent huge pages where Linux allows it (THP mode "madvise", the common
// default): a fresh 36 MB output (12 MP uint8 RGB) otherwise takes ~9,000 page faults, each zeroing 4 KB, when
// the kernel first writes it; measured on the 2-core VM: a fresh 12 MP copy 12.0 -> 4.4 ms. Only advice: where
// it is refused (other kernels, THP "never") the pages are ordinary ones. The same as PyTorch's opt-in
// THP_MEM_ALLOC_ENABLE, limited to our photo-sized outputs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lowlight {

// Advises the 2 MB-aligned interior of t's storage as huge pages; call it before the first write.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (!t.device().is_cpu() || t.storage().nbytes() < 2 * kHuge) return;
  const auto begin = reinterpret_cast<uintptr_t>(t.storage().data());
  const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1), hi = (begin + t.storage().nbytes()) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // errors ignored: advice only
#else
  (void)t;
#endif
}

}  // namespace lowlight
