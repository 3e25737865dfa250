// CPU emulation of cuBLAS's handle and SGEMM (include/cublas_v2.h). The column-major product
// C (m × n) = α op(A) op(B) + β C is the row-major product Cᵀ (n × m) = α op(B)ᵀ op(A)ᵀ + β Cᵀ
// over the same memory; Eigen evaluates it in that form, the one the CPU encoder's products
// take (a row-major result, each operand row-major or column-major as its memory is), so that
// Eigen runs the same kernel with the same blocking on both sides and the emulated device
// rounds as the CPU. A GPU's cuBLAS sums in its own order: the GPU tests allow for it.
#include <cublas_v2.h>

#include <Eigen/Core>
#include <cstdio>
#include <functional>

namespace lrsmc_emu {
cudaError_t enqueue_host_work(cudaStream_t stream, const char* name, std::function<void()> work);
cudaError_t check_device_range(const char* call, const char* argument, const void* pointer,
                               std::size_t bytes);
}  // namespace lrsmc_emu

struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;
template <typename Matrix>
using ConstView = Eigen::Map<const Matrix, Eigen::Unaligned, Stride>;

/// Cᵀ += op(B)ᵀ op(A)ᵀ with each operand mapped in the storage order its memory has.
void multiply_add(bool a_transposed, bool b_transposed, int m, int n, int k, const float* A,
                  int lda, const float* B, int ldb, float* C, int ldc) {
  Eigen::Map<RowMajor, Eigen::Unaligned, Stride> result(C, n, m, Stride(ldc));
  // op(B)ᵀ (n × k): B is k × n column-major (row-major n × k) untransposed, else n × k
  // column-major; op(A)ᵀ (k × m) likewise.
  if (!b_transposed && !a_transposed)
    result.noalias() += ConstView<RowMajor>(B, n, k, Stride(ldb)) *
                        ConstView<RowMajor>(A, k, m, Stride(lda));
  else if (!b_transposed && a_transposed)
    result.noalias() += ConstView<RowMajor>(B, n, k, Stride(ldb)) *
                        ConstView<ColMajor>(A, k, m, Stride(lda));
  else if (b_transposed && !a_transposed)
    result.noalias() += ConstView<ColMajor>(B, n, k, Stride(ldb)) *
                        ConstView<RowMajor>(A, k, m, Stride(lda));
  else
    result.noalias() += ConstView<ColMajor>(B, n, k, Stride(ldb)) *
                        ConstView<ColMajor>(A, k, m, Stride(lda));
}

cublasStatus_t invalid(const char* why) {
  std::fprintf(stderr, "lrsmc CUDA emulation: cublasSgemm: %s\n", why);
  return CUBLAS_STATUS_INVALID_VALUE;
}

}  // namespace

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  }
  return "unknown cuBLAS status";
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0) return invalid("negative size");
  if (transa == CUBLAS_OP_C || transb == CUBLAS_OP_C) return invalid("conjugate transpose");
  const bool a_transposed = transa == CUBLAS_OP_T, b_transposed = transb == CUBLAS_OP_T;
  // Leading dimensions as cuBLAS checks them: at least the stored matrix's rows.
  if (lda < (a_transposed ? k : m) || lda < 1) return invalid("lda below the rows of A");
  if (ldb < (b_transposed ? n : k) || ldb < 1) return invalid("ldb below the rows of B");
  if (ldc < m || ldc < 1) return invalid("ldc below the rows of C");
  if (alpha == nullptr || beta == nullptr) return invalid("null alpha or beta");
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  // The emulation runs only the products lrsmc asks for: α = 1, β ∈ {0, 1}.
  if (*alpha != 1.f || (*beta != 0.f && *beta != 1.f)) return invalid("alpha must be 1, beta 0 or 1");
  const auto columns_bytes = [](int ld, int rows, int columns) {
    return (std::size_t(columns - 1) * std::size_t(ld) + std::size_t(rows)) * sizeof(float);
  };
  const std::size_t a_bytes = k == 0 ? 0 : a_transposed ? columns_bytes(lda, k, m) : columns_bytes(lda, m, k);
  const std::size_t b_bytes = k == 0 ? 0 : b_transposed ? columns_bytes(ldb, n, k) : columns_bytes(ldb, k, n);
  if ((a_bytes > 0 &&
       lrsmc_emu::check_device_range("cublasSgemm", "A", A, a_bytes) != cudaSuccess) ||
      (b_bytes > 0 &&
       lrsmc_emu::check_device_range("cublasSgemm", "B", B, b_bytes) != cudaSuccess) ||
      lrsmc_emu::check_device_range("cublasSgemm", "C", C, columns_bytes(ldc, m, n)) !=
          cudaSuccess)
    return CUBLAS_STATUS_INVALID_VALUE;
  const bool overwrite = *beta == 0.f;
  const cudaError_t queued = lrsmc_emu::enqueue_host_work(handle->stream, "cublasSgemm", [=] {
    if (overwrite)
      for (int column = 0; column < n; ++column)
        for (int row = 0; row < m; ++row) C[std::size_t(column) * std::size_t(ldc) + std::size_t(row)] = 0.f;
    if (k > 0) multiply_add(a_transposed, b_transposed, m, n, k, A, lda, B, ldb, C, ldc);
  });
  return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
