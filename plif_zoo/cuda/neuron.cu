// Multi-step PLIF / LIF neuron, forward and backward (paper eqs. 2-17), one fused kernel each.
//
// Layout: x_seq, s_seq, h_seq, grad_* are [T, N] row-major (N neurons per step), v_init and
// grad_v_init are [N], v_out is [N] (V[T-1]) or [T, N] (store_v_seq). Storage dtype T of
// x_seq / s_seq / grad_s_seq / grad_x_seq is float, __half or __nv_bfloat16; h_seq, the state
// and every accumulation are float32. The per-neuron math is neuron_math.h's (shared with the
// CPU backend); this file only does indexing, memory and the reduction of dL/dk.
//
// Forward writes H (float32, one value per neuron-step) for backward; backward recomputes
// S[t] and V[t-1] from it. Each thread owns VEC consecutive neurons (VEC = 4 needs N % 4 == 0
// and 4-element-aligned pointers, which the launcher checks) and loops over T, loading the
// next step's input before it computes the current one.
//
// dL/dk is reduced deterministically: each thread sums its neurons' terms in a fixed order,
// each block reduces its threads with a fixed tree into partials[blockIdx.x], and sum_partials
// (one block) adds the partials in a fixed order. No atomics.
#include "dtypes.cuh"
#include "neuron_math.h"

namespace plif {

constexpr int kNeuronBlock = 256;  // the launcher must use this block size
constexpr int kReduceBlock = 1024;

template <int VEC>
__host__ __device__ inline void fill(float (&a)[VEC], float value) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) a[j] = value;
}

// Forward of neurons n0 .. n0 + VEC - 1 over all T steps. h_seq is null when no backward
// will run (inference): then H is not written at all.
template <typename T, int VEC>
__host__ __device__ inline void neuron_forward_group(
    const T* __restrict__ x_seq, const float* __restrict__ v_init, float k, T* __restrict__ s_seq,
    float* __restrict__ h_seq, float* __restrict__ v_out, long long n0, long long neurons,
    int steps, const plif_params<float>& p, bool store_v_seq) {
  float v[VEC], x_next[VEC];
  load_f32<float, VEC>(v_init, n0, v);
  load_f32<T, VEC>(x_seq, n0, x_next);
  for (int t = 0; t < steps; ++t) {
    const long long off = (long long)t * neurons + n0;
    float x[VEC], h[VEC], s[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) x[j] = x_next[j];
    if (t + 1 < steps) load_f32<T, VEC>(x_seq, off + neurons, x_next);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      h[j] = plif_charge(v[j], x[j], k, p);
      s[j] = plif_fire(h[j], p);
      v[j] = plif_reset(h[j], s[j], p);
    }
    if (h_seq != nullptr) store_f32<float, VEC>(h_seq, off, h);
    store_f32<T, VEC>(s_seq, off, s);
    if (store_v_seq) store_f32<float, VEC>(v_out, off, v);
  }
  if (!store_v_seq) store_f32<float, VEC>(v_out, n0, v);
}

// Backward of neurons n0 .. n0 + VEC - 1 in reverse time; returns their summed dL/dk terms.
// grad_s_seq, grad_v and grad_v_init may be null (no gradient arrives / none is wanted);
// grad_v is dL/dV[T-1] ([N]) or, with store_v_seq, dL/dV[t] for every step ([T, N]).
template <typename T, int VEC>
__host__ __device__ inline float neuron_backward_group(
    const T* __restrict__ grad_s_seq, const float* __restrict__ grad_v,
    const float* __restrict__ h_seq, const float* __restrict__ v_init, float k,
    T* __restrict__ grad_x_seq, float* __restrict__ grad_v_init, long long n0, long long neurons,
    int steps, const plif_params<float>& p, bool store_v_seq) {
  float carry[VEC], grad_k[VEC], h[VEC];  // carry = dL/dV[t] arriving from step t + 1
  fill<VEC>(grad_k, 0.0f);
  if (grad_v != nullptr && !store_v_seq) {
    load_f32<float, VEC>(grad_v, n0, carry);
  } else {
    fill<VEC>(carry, 0.0f);
  }
  load_f32<float, VEC>(h_seq, (long long)(steps - 1) * neurons + n0, h);
  for (int t = steps - 1; t >= 0; --t) {
    const long long off = (long long)t * neurons + n0;
    float h_prev[VEC], v_prev[VEC], grad_s[VEC], grad_v_t[VEC], grad_x[VEC];
    if (t > 0) {
      load_f32<float, VEC>(h_seq, off - neurons, h_prev);
#pragma unroll
      for (int j = 0; j < VEC; ++j) v_prev[j] = plif_v_prev(h_prev[j], p);
    } else {
      load_f32<float, VEC>(v_init, n0, v_prev);
    }
    if (grad_s_seq != nullptr) {
      load_f32<T, VEC>(grad_s_seq, off, grad_s);
    } else {
      fill<VEC>(grad_s, 0.0f);
    }
    if (grad_v != nullptr && store_v_seq) {
      load_f32<float, VEC>(grad_v, off, grad_v_t);
#pragma unroll
      for (int j = 0; j < VEC; ++j) grad_v_t[j] = carry[j] + grad_v_t[j];
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) grad_v_t[j] = carry[j];
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float grad_h = plif_grad_h(h[j], grad_s[j], grad_v_t[j], p);
      grad_x[j] = plif_grad_x(grad_h, k, p);
      grad_k[j] += plif_grad_k_term(grad_h, h[j], v_prev[j], k, p);
      carry[j] = plif_grad_v_prev(grad_h, k);
    }
    if (t > 0) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) h[j] = h_prev[j];
    }
    store_f32<T, VEC>(grad_x_seq, off, grad_x);
  }
  if (grad_v_init != nullptr) store_f32<float, VEC>(grad_v_init, n0, carry);
  float total = 0.0f;
#pragma unroll
  for (int j = 0; j < VEC; ++j) total += grad_k[j];
  return total;
}

#ifdef __CUDACC__
// Sum of `value` over the kNeuronBlock threads of this block, in a fixed order, in thread 0.
__device__ inline float block_sum(float value) {
  __shared__ float buf[kNeuronBlock];
  buf[threadIdx.x] = value;
  __syncthreads();
#pragma unroll
  for (int stride = kNeuronBlock / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  return buf[0];
}
#endif

}  // namespace plif

// Scalar options arrive as kernel arguments (alpha too), so changing them never recompiles.
#define PLIF_NEURON_PARAMS                                                                 \
  float v_th, float v_reset, float alpha, int sg_id, int hard_reset, int decay_input,      \
      int detach_reset, int store_v_seq
#define PLIF_MAKE_PARAMS \
  plif_make_params<float>(v_th, v_reset, alpha, sg_id, hard_reset, decay_input, detach_reset)

#define PLIF_NEURON_KERNELS(T, NAME, VEC)                                                        \
  extern "C" __global__ void __launch_bounds__(plif::kNeuronBlock)                                \
      neuron_forward_##NAME##_v##VEC(const T* __restrict__ x_seq,                                 \
                                     const float* __restrict__ v_init,                           \
                                     const float* __restrict__ k_ptr, T* __restrict__ s_seq,     \
                                     float* __restrict__ h_seq, float* __restrict__ v_out,       \
                                     long long neurons, int steps, PLIF_NEURON_PARAMS) {          \
    const long long group = blockIdx.x * (long long)blockDim.x + threadIdx.x;                     \
    if (group * VEC >= neurons) return;                                                           \
    plif::neuron_forward_group<T, VEC>(x_seq, v_init, *k_ptr, s_seq, h_seq, v_out, group * VEC,   \
                                       neurons, steps, PLIF_MAKE_PARAMS, store_v_seq != 0);       \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(plif::kNeuronBlock)                                \
      neuron_backward_##NAME##_v##VEC(                                                            \
          const T* __restrict__ grad_s_seq, const float* __restrict__ grad_v,                     \
          const float* __restrict__ h_seq, const float* __restrict__ v_init,                      \
          const float* __restrict__ k_ptr, T* __restrict__ grad_x_seq,                            \
          float* __restrict__ grad_v_init, float* __restrict__ partials, long long neurons,       \
          int steps, PLIF_NEURON_PARAMS) {                                                        \
    const long long group = blockIdx.x * (long long)blockDim.x + threadIdx.x;                     \
    float grad_k = 0.0f;                                                                          \
    if (group * VEC < neurons) {                                                                  \
      grad_k = plif::neuron_backward_group<T, VEC>(grad_s_seq, grad_v, h_seq, v_init, *k_ptr,     \
                                                   grad_x_seq, grad_v_init, group * VEC, neurons, \
                                                   steps, PLIF_MAKE_PARAMS, store_v_seq != 0);    \
    }                                                                                             \
    if (partials != nullptr) { /* uniform over the block: every thread reaches the barriers */  \
      const float block_total = plif::block_sum(grad_k);                                          \
      if (threadIdx.x == 0) partials[blockIdx.x] = block_total;                                   \
    }                                                                                             \
  }

PLIF_NEURON_KERNELS(float, f32, 1)
PLIF_NEURON_KERNELS(float, f32, 4)
PLIF_NEURON_KERNELS(__half, f16, 1)
PLIF_NEURON_KERNELS(__half, f16, 4)
PLIF_NEURON_KERNELS(__nv_bfloat16, bf16, 1)
PLIF_NEURON_KERNELS(__nv_bfloat16, bf16, 4)

// out[0] = sum of partials[0 .. count), in a fixed order; launch one block of kReduceBlock.
extern "C" __global__ void __launch_bounds__(plif::kReduceBlock)
    sum_partials(const float* __restrict__ partials, long long count, float* __restrict__ out) {
  __shared__ float buf[plif::kReduceBlock];
  float acc = 0.0f;
  for (long long i = threadIdx.x; i < count; i += plif::kReduceBlock) acc += partials[i];
  buf[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = plif::kReduceBlock / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = buf[0];
}
