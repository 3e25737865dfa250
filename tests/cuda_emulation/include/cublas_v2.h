// CPU emulation of the part of cuBLAS that lrsmc uses (tests/cuda_emulation/README.md, "cuBLAS"):
// a handle bound to a stream and single-precision GEMM, column-major as cuBLAS. The product is
// queued on the handle's stream like a kernel and evaluated by Eigen in the row-major form the
// CPU encoder writes (host/model/encoder.cpp), so that the emulated device rounds as the CPU.
#pragma once

#include <cuda_runtime_api.h>

typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
} cublasStatus_t;

typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;

struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

#define CUBLAS_VER_MAJOR 13
// The names cuBLAS's header maps its calls to.
#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
#define cublasSgemm cublasSgemm_v2

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream);
const char* cublasGetStatusString(cublasStatus_t status);

/// C = α op(A) op(B) + β C, column-major: op(A) m × k, op(B) k × n, C m × n.
cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc);
