# LRSMC_CUDA_EMULATION (tests/cuda_emulation/README.md): kernels/*.cu rewritten by
# tests/cuda_emulation/rewrite_launches.py (launch syntax and extern __shared__ only) and
# compiled as C++ against the emulated runtime and CUB of tests/cuda_emulation/include.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
# Kernel threads are fibers: Boost.Context switches them without a system call.
find_package(Boost 1.67 REQUIRED COMPONENTS context)
set(_lrsmc_emulation_dir ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda_emulation)

add_library(lrsmc_cuda_emulation STATIC ${_lrsmc_emulation_dir}/runtime.cpp
                                        ${_lrsmc_emulation_dir}/cublas.cpp
                                        ${_lrsmc_emulation_dir}/nccl.cpp)
target_include_directories(lrsmc_cuda_emulation PUBLIC
  $<BUILD_INTERFACE:${_lrsmc_emulation_dir}/include>)
# Eigen evaluates the emulated cuBLAS products (tests/cuda_emulation/cublas.cpp).
target_link_libraries(lrsmc_cuda_emulation PUBLIC Threads::Threads
                                           PRIVATE Boost::context Eigen3::Eigen
                                                   $<BUILD_INTERFACE:lrsmc_warnings>)
target_compile_definitions(lrsmc_cuda_emulation PRIVATE EIGEN_MPL2_ONLY)
# The emulated NCCL's communicators of several processes run over MPI
# (tests/cuda_emulation/nccl.cpp); without MPI they hold one process.
if(LRSMC_ENABLE_MPI)
  target_link_libraries(lrsmc_cuda_emulation PRIVATE MPI::MPI_CXX)
  target_compile_definitions(lrsmc_cuda_emulation PRIVATE LRSMC_EMULATED_NCCL_MPI=1)
endif()

# The kernels' sources, and the headers of kernels/ they include (the generic launcher in
# kernels/launcher.hpp launches with <<<...>>> too): rewritten copies, found before the
# originals when the kernels are compiled.
file(GLOB _lrsmc_kernel_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.cu)
file(GLOB _lrsmc_kernel_headers CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.hpp
                                                  ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.cuh)
set(_lrsmc_emulated_dir ${CMAKE_CURRENT_BINARY_DIR}/emulated_kernels)
set(_lrsmc_emulated_sources)
set(_lrsmc_emulated_headers)
foreach(_source IN LISTS _lrsmc_kernel_sources _lrsmc_kernel_headers)
  get_filename_component(_name ${_source} NAME)
  get_filename_component(_extension ${_source} LAST_EXT)
  if(_extension STREQUAL ".cu")
    get_filename_component(_stem ${_source} NAME_WE)
    set(_output ${_lrsmc_emulated_dir}/${_stem}.cpp)
  else()
    set(_output ${_lrsmc_emulated_dir}/include/kernels/${_name})
  endif()
  get_filename_component(_output_dir ${_output} DIRECTORY)
  add_custom_command(OUTPUT ${_output}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_output_dir}
    COMMAND Python3::Interpreter ${_lrsmc_emulation_dir}/rewrite_launches.py ${_source} ${_output}
    DEPENDS ${_source} ${_lrsmc_emulation_dir}/rewrite_launches.py
    COMMENT "Rewriting ${_name} for the CUDA emulation" VERBATIM)
  if(_extension STREQUAL ".cu")
    list(APPEND _lrsmc_emulated_sources ${_output})
  else()
    list(APPEND _lrsmc_emulated_headers ${_output})
  endif()
endforeach()

add_library(lrsmc_kernels STATIC ${_lrsmc_emulated_sources} ${_lrsmc_emulated_headers})
target_include_directories(lrsmc_kernels BEFORE PRIVATE ${_lrsmc_emulated_dir}/include)
target_include_directories(lrsmc_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include
                                                 ${CMAKE_CURRENT_SOURCE_DIR})
# cuda_runtime.h is what nvcc includes before every .cu file. The kernels are compiled without
# FMA contraction, as the CPU engines are (ISO C++ mode): the float engine and the kernels run
# the same maths in the same order, so they agree bit for bit (tests/cuda_emulation/README.md).
# nvcc contracts on a GPU; what the kernels rely on not being fused is written with rounded
# products (__dmul_rn), which tests/cuda_emulation/test_rounding.cpp checks under contraction.
target_compile_options(lrsmc_kernels PRIVATE -include cuda_runtime.h -ffp-contract=off)
set(_lrsmc_host_fma OFF)
if(EXISTS /proc/cpuinfo)
  file(STRINGS /proc/cpuinfo _lrsmc_cpu_flags REGEX "^flags" LIMIT_COUNT 1)
  if(_lrsmc_cpu_flags MATCHES " fma ")
    set(_lrsmc_host_fma ON)
  endif()
endif()
target_link_libraries(lrsmc_kernels PUBLIC lrsmc_cuda_emulation)
# nvcc compiles these sources with -Wall -Wextra (CMakeLists.txt): the same here. __shared__
# variables become function-local statics, whose anonymous-namespace types GCC remarks on.
target_compile_options(lrsmc_kernels PRIVATE -Wall -Wextra -Wno-subobject-linkage -Wno-unknown-pragmas)
if(LRSMC_SANITIZE)
  target_compile_options(lrsmc_kernels PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
endif()
target_link_libraries(lrsmc PRIVATE lrsmc_kernels)
target_include_directories(lrsmc PRIVATE ${_lrsmc_emulation_dir}/include)
target_compile_definitions(lrsmc PUBLIC LRSMC_WITH_CUDA=1 LRSMC_CUDA_EMULATION=1 LRSMC_WITH_NCCL=1)

