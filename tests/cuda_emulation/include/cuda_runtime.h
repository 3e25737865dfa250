// CPU emulation (tests/cuda_emulation/README.md): the runtime API and, for kernel sources, the
// device-side emulation.
#pragma once

#include <cuda_runtime_api.h>

#include "lrsmc_emulation/device.hpp"
