# LRSMC_CUDA_EMULATION (tests/cuda_emulation/README.md): kernels/*.cu rewritten by
# tests/cuda_emulation/rewrite_launches.py (launch syntax and extern __shared__ only) and
# compiled as C++ against the emulated runtime and CUB of tests/cuda_emulation/include.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
# Kernel threads are fibers: Boost.Context switches them without a system call.
find_package(Boost 1.67 REQUIRED COMPONENTS context)
set(_lrsmc_emulation_dir ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda_emulation)

add_library(lrsmc_cuda_emulation STATIC ${_lrsmc_emulation_dir}/runtime.cpp)
target_include_directories(lrsmc_cuda_emulation PUBLIC
  $<BUILD_INTERFACE:${_lrsmc_emulation_dir}/include>)
target_link_libraries(lrsmc_cuda_emulation PUBLIC Threads::Threads
                                           PRIVATE Boost::context $<BUILD_INTERFACE:lrsmc_warnings>)

file(GLOB _lrsmc_kernel_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.cu)
set(_lrsmc_emulated_sources)
foreach(_source IN LISTS _lrsmc_kernel_sources)
  get_filename_component(_name ${_source} NAME_WE)
  set(_output ${CMAKE_CURRENT_BINARY_DIR}/emulated_kernels/${_name}.cpp)
  add_custom_command(OUTPUT ${_output}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/emulated_kernels
    COMMAND Python3::Interpreter ${_lrsmc_emulation_dir}/rewrite_launches.py ${_source} ${_output}
    DEPENDS ${_source} ${_lrsmc_emulation_dir}/rewrite_launches.py
    COMMENT "Rewriting ${_name}.cu for the CUDA emulation" VERBATIM)
  list(APPEND _lrsmc_emulated_sources ${_output})
endforeach()

add_library(lrsmc_kernels STATIC ${_lrsmc_emulated_sources})
target_include_directories(lrsmc_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include
                                                 ${CMAKE_CURRENT_SOURCE_DIR})
# cuda_runtime.h is what nvcc includes before every .cu file. nvcc contracts a·b + c into one
# FMA (-fmad=true) except in the fixed-point sweep (-fmad=false, CMakeLists.txt): the same here
# when the host has FMA, so the tests meet the device's kind of rounding differences.
target_compile_options(lrsmc_kernels PRIVATE -include cuda_runtime.h -ffp-contract=fast)
set(_lrsmc_host_fma OFF)
if(EXISTS /proc/cpuinfo)
  file(STRINGS /proc/cpuinfo _lrsmc_cpu_flags REGEX "^flags" LIMIT_COUNT 1)
  if(_lrsmc_cpu_flags MATCHES " fma ")
    set(_lrsmc_host_fma ON)
    target_compile_options(lrsmc_kernels PRIVATE -mfma)
  endif()
endif()
message(STATUS "lrsmc: CUDA emulation, FMA contraction in the kernels: ${_lrsmc_host_fma}")
set_source_files_properties(${CMAKE_CURRENT_BINARY_DIR}/emulated_kernels/fixed_points.cpp
                            PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
target_link_libraries(lrsmc_kernels PUBLIC lrsmc_cuda_emulation)
# nvcc compiles these sources with -Wall -Wextra (CMakeLists.txt): the same here. __shared__
# variables become function-local statics, whose anonymous-namespace types GCC remarks on.
target_compile_options(lrsmc_kernels PRIVATE -Wall -Wextra -Wno-subobject-linkage -Wno-unknown-pragmas)
if(LRSMC_SANITIZE)
  target_compile_options(lrsmc_kernels PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
endif()
target_link_libraries(lrsmc PRIVATE lrsmc_kernels)
target_include_directories(lrsmc PRIVATE ${_lrsmc_emulation_dir}/include)
target_compile_definitions(lrsmc PUBLIC LRSMC_WITH_CUDA=1 LRSMC_CUDA_EMULATION=1)
