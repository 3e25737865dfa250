#pragma once
#include "lrsmc_emulation/cub.hpp"
