// Spike max-pooling over non-overlapping windows (kernel == stride, floor mode), paper Sec. 3.6.
//
// x: [P, H, W] planes (P = T * N * C), y: [P, Ho, Wo], Ho = H / kh, Wo = W / kw.
// Forward takes the maximum of each window (an OR on binary spikes) and keeps one byte per
// output: the position in the window of its first maximal element, the element
// nn.MaxPool2d picks (or of its last NaN, as there). Backward writes the whole window:
// the output's gradient at that position and zero elsewhere. Rows and columns left over by
// the floor are not touched here; the launcher zero-fills them.
//
// One thread per output. The k2 variants fix a 2 x 2 window and load each window row as one
// 2-element pack (the launcher checks W is even and x is aligned); the "any" variants take
// the window size at run time (kh * kw <= 256).
#include "dtypes.cuh"

namespace plif {

// Window geometry of output o: element offset of its top-left input element.
__host__ __device__ inline long long window_origin(long long o, int H, int W, int Ho, int Wo, int kh,
                                                   int kw) {
  const long long plane = o / ((long long)Ho * Wo);
  const int r = (int)(o - plane * Ho * Wo);
  const int i = r / Wo;
  const int j = r - i * Wo;
  return plane * H * W + (long long)(i * kh) * W + (long long)j * kw;
}

__host__ __device__ inline bool beats(float v, float best) {
  return v > best || v != v;  // every NaN takes over: the last one wins, as in nn.MaxPool2d
}

template <typename T>
__host__ __device__ inline void max_pool_forward_any(const T* __restrict__ x, T* __restrict__ y,
                                                     unsigned char* __restrict__ arg, long long o,
                                                     int H, int W, int Ho, int Wo, int kh, int kw) {
  const long long base = window_origin(o, H, W, Ho, Wo, kh, kw);
  float best = Scalar<T>::to_f32(x[base]);
  int best_e = 0;
  for (int a = 0; a < kh; ++a) {
    for (int b = 0; b < kw; ++b) {
      const float v = Scalar<T>::to_f32(x[base + (long long)a * W + b]);
      if (beats(v, best)) {
        best = v;
        best_e = a * kw + b;
      }
    }
  }
  y[o] = Scalar<T>::from_f32(best);
  arg[o] = (unsigned char)best_e;
}

template <typename T>
__host__ __device__ inline void max_pool_forward_k2(const T* __restrict__ x, T* __restrict__ y,
                                                    unsigned char* __restrict__ arg, long long o,
                                                    int H, int W, int Ho, int Wo) {
  const long long base = window_origin(o, H, W, Ho, Wo, 2, 2);
  float top[2], bottom[2];
  load_f32<T, 2>(x, base, top);
  load_f32<T, 2>(x, base + W, bottom);
  const float v[4] = {top[0], top[1], bottom[0], bottom[1]};
  float best = v[0];
  int best_e = 0;
#pragma unroll
  for (int e = 1; e < 4; ++e) {
    if (beats(v[e], best)) {
      best = v[e];
      best_e = e;
    }
  }
  y[o] = Scalar<T>::from_f32(best);
  arg[o] = (unsigned char)best_e;
}

template <typename T>
__host__ __device__ inline void max_pool_backward_any(const T* __restrict__ grad_y,
                                                      const unsigned char* __restrict__ arg,
                                                      T* __restrict__ grad_x, long long o, int H,
                                                      int W, int Ho, int Wo, int kh, int kw) {
  const long long base = window_origin(o, H, W, Ho, Wo, kh, kw);
  const T g = grad_y[o];
  const T zero = Scalar<T>::from_f32(0.0f);
  const int hit = arg[o];
  for (int a = 0; a < kh; ++a) {
    for (int b = 0; b < kw; ++b) {
      grad_x[base + (long long)a * W + b] = (a * kw + b == hit) ? g : zero;
    }
  }
}

template <typename T>
__host__ __device__ inline void max_pool_backward_k2(const T* __restrict__ grad_y,
                                                     const unsigned char* __restrict__ arg,
                                                     T* __restrict__ grad_x, long long o, int H,
                                                     int W, int Ho, int Wo) {
  const long long base = window_origin(o, H, W, Ho, Wo, 2, 2);
  const float g = Scalar<T>::to_f32(grad_y[o]);
  const int hit = arg[o];
  const float top[2] = {hit == 0 ? g : 0.0f, hit == 1 ? g : 0.0f};
  const float bottom[2] = {hit == 2 ? g : 0.0f, hit == 3 ? g : 0.0f};
  store_f32<T, 2>(grad_x, base, top);
  store_f32<T, 2>(grad_x, base + W, bottom);
}

}  // namespace plif

#define PLIF_MAX_POOL_KERNELS(T, NAME)                                                            \
  extern "C" __global__ void max_pool_forward_##NAME##_any(                                       \
      const T* __restrict__ x, T* __restrict__ y, unsigned char* __restrict__ arg,                \
      long long outputs, int H, int W, int Ho, int Wo, int kh, int kw) {                          \
    for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < outputs;             \
         o += (long long)gridDim.x * blockDim.x)                                                  \
      plif::max_pool_forward_any<T>(x, y, arg, o, H, W, Ho, Wo, kh, kw);                          \
  }                                                                                               \
  extern "C" __global__ void max_pool_forward_##NAME##_k2(                                        \
      const T* __restrict__ x, T* __restrict__ y, unsigned char* __restrict__ arg,                \
      long long outputs, int H, int W, int Ho, int Wo, int kh, int kw) {                          \
    for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < outputs;             \
         o += (long long)gridDim.x * blockDim.x)                                                  \
      plif::max_pool_forward_k2<T>(x, y, arg, o, H, W, Ho, Wo);                                   \
  }                                                                                               \
  extern "C" __global__ void max_pool_backward_##NAME##_any(                                      \
      const T* __restrict__ grad_y, const unsigned char* __restrict__ arg,                        \
      T* __restrict__ grad_x, long long outputs, int H, int W, int Ho, int Wo, int kh, int kw) {  \
    for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < outputs;             \
         o += (long long)gridDim.x * blockDim.x)                                                  \
      plif::max_pool_backward_any<T>(grad_y, arg, grad_x, o, H, W, Ho, Wo, kh, kw);               \
  }                                                                                               \
  extern "C" __global__ void max_pool_backward_##NAME##_k2(                                       \
      const T* __restrict__ grad_y, const unsigned char* __restrict__ arg,                        \
      T* __restrict__ grad_x, long long outputs, int H, int W, int Ho, int Wo, int kh, int kw) {  \
    for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < outputs;             \
         o += (long long)gridDim.x * blockDim.x)                                                  \
      plif::max_pool_backward_k2<T>(grad_y, arg, grad_x, o, H, W, Ho, Wo);                        \
  }

PLIF_MAX_POOL_KERNELS(float, f32)
PLIF_MAX_POOL_KERNELS(__half, f16)
PLIF_MAX_POOL_KERNELS(__nv_bfloat16, bf16)
