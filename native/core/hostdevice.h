// Marks functions that both the CPU path and CUDA kernels compile. Under nvcc they become
// __host__ __device__; in plain C++ builds they are ordinary inline functions.
#pragma once
#if defined(__CUDACC__)
#define VT_HD __host__ __device__ __forceinline__
#else
#define VT_HD inline
#endif
