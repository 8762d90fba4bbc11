// Storage types of the kernels' tensors and their float32 compute values.
//
// Every kernel reads float32, float16 or bfloat16 and computes in float32. Pack<T, VEC>
// moves VEC consecutive elements in one aligned memory transaction (the caller
// guarantees the alignment). Everything is __host__ __device__ so the CPU test can run
// the kernels' per-thread bodies on the host.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace plif {

template <typename T>
struct Scalar;

template <>
struct Scalar<float> {
  __host__ __device__ static float to_f32(float v) { return v; }
  __host__ __device__ static float from_f32(float v) { return v; }
};

template <>
struct Scalar<__half> {
  __host__ __device__ static float to_f32(__half v) { return __half2float(v); }
  __host__ __device__ static __half from_f32(float v) { return __float2half_rn(v); }
};

template <>
struct Scalar<__nv_bfloat16> {
  __host__ __device__ static float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
  __host__ __device__ static __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }
};

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// out[j] = p[i + j] as float32, j < VEC; p + i must be aligned to sizeof(T) * VEC.
template <typename T, int VEC>
__host__ __device__ inline void load_f32(const T* p, long long i, float (&out)[VEC]) {
  const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(p + i);
#pragma unroll
  for (int j = 0; j < VEC; ++j) out[j] = Scalar<T>::to_f32(pk.v[j]);
}

// p[i + j] = in[j] rounded to T (round to nearest even), j < VEC.
template <typename T, int VEC>
__host__ __device__ inline void store_f32(T* p, long long i, const float (&in)[VEC]) {
  Pack<T, VEC> pk;
#pragma unroll
  for (int j = 0; j < VEC; ++j) pk.v[j] = Scalar<T>::from_f32(in[j]);
  *reinterpret_cast<Pack<T, VEC>*>(p + i) = pk;
}

}  // namespace plif
