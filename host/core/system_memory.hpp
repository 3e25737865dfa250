// Internal: this machine's memory, for refusing a request larger than it before allocating.
#pragma once

#include <unistd.h>

namespace lrsmc::detail {

/// Bytes of physical memory, or 0 when the system does not say.
[[nodiscard]] inline double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? double(pages) * double(page_size) : 0.0;
}

}  // namespace lrsmc::detail
