// Runs the CUDA kernels' per-thread bodies on the host, one "thread" after another, so that
// tests/test_kernels_compile.py can check their indexing, packing and reverse-time logic
// against the torch reference without a GPU. Only the launch, the block reduction and the
// device's own code generation stay unproven here.
#include "max_pool.cu"
#include "neuron.cu"

namespace {

template <typename T, int VEC>
void forward(const void* x, const float* v_init, float k, void* s, float* h, float* v_out,
             long long neurons, int steps, const plif_params<float>& p, bool store_v_seq) {
  for (long long g = 0; g * VEC < neurons; ++g)
    plif::neuron_forward_group<T, VEC>(static_cast<const T*>(x), v_init, k, static_cast<T*>(s), h,
                                       v_out, g * VEC, neurons, steps, p, store_v_seq);
}

// Mirrors the kernel's grid: groups are cut into blocks of kNeuronBlock threads, each block's
// terms summed into partials[block] (sequentially here, by a tree on the GPU).
template <typename T, int VEC>
void backward(const void* grad_s, const float* grad_v, const float* h, const float* v_init,
              float k, void* grad_x, float* grad_v_init, float* partials, long long neurons,
              int steps, const plif_params<float>& p, bool store_v_seq) {
  const long long groups = neurons / VEC;
  for (long long g = 0; g < groups; ++g) {
    const float term = plif::neuron_backward_group<T, VEC>(
        static_cast<const T*>(grad_s), grad_v, h, v_init, k, static_cast<T*>(grad_x), grad_v_init,
        g * VEC, neurons, steps, p, store_v_seq);
    if (partials != nullptr) {
      if (g % plif::kNeuronBlock == 0) partials[g / plif::kNeuronBlock] = 0.0f;
      partials[g / plif::kNeuronBlock] += term;
    }
  }
}

template <typename T>
void pool_forward(const void* x, void* y, unsigned char* arg, long long outputs, int H, int W,
                  int Ho, int Wo, int kh, int kw, bool k2) {
  for (long long o = 0; o < outputs; ++o) {
    if (k2)
      plif::max_pool_forward_k2<T>(static_cast<const T*>(x), static_cast<T*>(y), arg, o, H, W, Ho, Wo);
    else
      plif::max_pool_forward_any<T>(static_cast<const T*>(x), static_cast<T*>(y), arg, o, H, W, Ho,
                                    Wo, kh, kw);
  }
}

template <typename T>
void pool_backward(const void* gy, const unsigned char* arg, void* gx, long long outputs, int H,
                   int W, int Ho, int Wo, int kh, int kw, bool k2) {
  for (long long o = 0; o < outputs; ++o) {
    if (k2)
      plif::max_pool_backward_k2<T>(static_cast<const T*>(gy), arg, static_cast<T*>(gx), o, H, W,
                                    Ho, Wo);
    else
      plif::max_pool_backward_any<T>(static_cast<const T*>(gy), arg, static_cast<T*>(gx), o, H, W,
                                     Ho, Wo, kh, kw);
  }
}

}  // namespace

#define PLIF_DISPATCH(dtype, vec, CALL)                      \
  switch ((dtype) * 10 + (vec)) {                            \
    case 1: CALL(float, 1); break;                           \
    case 4: CALL(float, 4); break;                           \
    case 11: CALL(__half, 1); break;                         \
    case 14: CALL(__half, 4); break;                         \
    case 21: CALL(__nv_bfloat16, 1); break;                  \
    case 24: CALL(__nv_bfloat16, 4); break;                  \
    default: return 1;                                       \
  }

// dtype: 0 float32, 1 float16, 2 bfloat16. Returns nonzero for an unknown dtype / vec.
extern "C" int host_neuron_forward(int dtype, int vec, const void* x, const float* v_init,
                                   float k, void* s, float* h, float* v_out, long long neurons,
                                   int steps, float v_th, float v_reset, float alpha, int sg_id,
                                   int hard_reset, int decay_input, int detach_reset,
                                   int store_v_seq) {
  const plif_params<float> p = plif_make_params<float>(v_th, v_reset, alpha, sg_id, hard_reset,
                                                       decay_input, detach_reset);
#define CALL(T, V) forward<T, V>(x, v_init, k, s, h, v_out, neurons, steps, p, store_v_seq != 0)
  PLIF_DISPATCH(dtype, vec, CALL)
#undef CALL
  return 0;
}

extern "C" int host_neuron_backward(int dtype, int vec, const void* grad_s, const float* grad_v,
                                    const float* h, const float* v_init, float k, void* grad_x,
                                    float* grad_v_init, float* partials, long long neurons,
                                    int steps, float v_th, float v_reset, float alpha, int sg_id,
                                    int hard_reset, int decay_input, int detach_reset,
                                    int store_v_seq) {
  const plif_params<float> p = plif_make_params<float>(v_th, v_reset, alpha, sg_id, hard_reset,
                                                       decay_input, detach_reset);
#define CALL(T, V)                                                                            \
  backward<T, V>(grad_s, grad_v, h, v_init, k, grad_x, grad_v_init, partials, neurons, steps, p, \
                 store_v_seq != 0)
  PLIF_DISPATCH(dtype, vec, CALL)
#undef CALL
  return 0;
}

extern "C" int host_max_pool(int dtype, int backward_pass, int k2, const void* a,
                             unsigned char* arg, void* b, long long outputs, int H, int W, int Ho,
                             int Wo, int kh, int kw) {
#define CALL(T, V)                                                                            \
  if (backward_pass)                                                                          \
    pool_backward<T>(a, arg, b, outputs, H, W, Ho, Wo, kh, kw, k2 != 0);                      \
  else                                                                                        \
    pool_forward<T>(a, b, arg, outputs, H, W, Ho, Wo, kh, kw, k2 != 0)
  PLIF_DISPATCH(dtype, 1, CALL)
#undef CALL
  return 0;
}

// ---- launch emulation: the kernels' exact argument lists plus (grid, block) ---------------------
// plif_zoo/cuda/ops.py's launchers run against these in tests/test_kernels_compile.py, so
// their argument order, grid sizes, variant choice and reduction plumbing are checked too.
// Returns 2 when the launch configuration would be wrong on the GPU.

extern "C" int emu_neuron_forward(int dtype, int vec, long long grid, int block, const void* x,
                                  const float* v_init, const float* k_ptr, void* s, float* h,
                                  float* v_out, long long neurons, int steps, float v_th,
                                  float v_reset, float alpha, int sg_id, int hard_reset,
                                  int decay_input, int detach_reset, int store_v_seq) {
  if (block != plif::kNeuronBlock || grid * block * vec < neurons) return 2;
  const plif_params<float> p = plif_make_params<float>(v_th, v_reset, alpha, sg_id, hard_reset,
                                                       decay_input, detach_reset);
  for (long long b = 0; b < grid; ++b) {
    for (int t = 0; t < block; ++t) {
      const long long group = b * block + t;
      if (group * vec >= neurons) continue;
#define CALL(T, V)                                                                              \
  plif::neuron_forward_group<T, V>(static_cast<const T*>(x), v_init, *k_ptr, static_cast<T*>(s), \
                                   h, v_out, group * V, neurons, steps, p, store_v_seq != 0)
      PLIF_DISPATCH(dtype, vec, CALL)
#undef CALL
    }
  }
  return 0;
}

extern "C" int emu_neuron_backward(int dtype, int vec, long long grid, int block,
                                   const void* grad_s, const float* grad_v, const float* h,
                                   const float* v_init, const float* k_ptr, void* grad_x,
                                   float* grad_v_init, float* partials, long long neurons,
                                   int steps, float v_th, float v_reset, float alpha, int sg_id,
                                   int hard_reset, int decay_input, int detach_reset,
                                   int store_v_seq) {
  if (block != plif::kNeuronBlock || grid * block * vec < neurons) return 2;
  const plif_params<float> p = plif_make_params<float>(v_th, v_reset, alpha, sg_id, hard_reset,
                                                       decay_input, detach_reset);
  for (long long b = 0; b < grid; ++b) {
    float block_total = 0.0f;
    for (int t = 0; t < block; ++t) {
      const long long group = b * block + t;
      if (group * vec >= neurons) continue;
      float term = 0.0f;
#define CALL(T, V)                                                                               \
  term = plif::neuron_backward_group<T, V>(static_cast<const T*>(grad_s), grad_v, h, v_init,     \
                                           *k_ptr, static_cast<T*>(grad_x), grad_v_init,         \
                                           group * V, neurons, steps, p, store_v_seq != 0)
      PLIF_DISPATCH(dtype, vec, CALL)
#undef CALL
      block_total += term;
    }
    if (partials != nullptr) partials[b] = block_total;
  }
  return 0;
}

extern "C" int emu_sum_partials(long long grid, int block, const float* partials, long long count,
                                float* out) {
  if (grid != 1 || block != plif::kReduceBlock) return 2;
  float acc = 0.0f;
  for (long long i = 0; i < count; ++i) acc += partials[i];
  out[0] = acc;
  return 0;
}

// The max-pool kernels loop with a grid stride, so any grid covers every output.
extern "C" int emu_max_pool(int dtype, int backward_pass, int k2, long long grid, int block,
                            const void* a, void* b_or_arg, void* c, long long outputs, int H, int W,
                            int Ho, int Wo, int kh, int kw) {
  if (grid < 1 || block < 1 || grid > 2147483647LL) return 2;
  for (long long b = 0; b < grid; ++b) {
    for (int t = 0; t < block; ++t) {
      for (long long o = b * block + t; o < outputs; o += grid * block) {
#define CALL(T, V)                                                                                \
  if (backward_pass) {                                                                            \
    if (k2)                                                                                       \
      plif::max_pool_backward_k2<T>(static_cast<const T*>(a), static_cast<const unsigned char*>(b_or_arg), \
                                    static_cast<T*>(c), o, H, W, Ho, Wo);                         \
    else                                                                                          \
      plif::max_pool_backward_any<T>(static_cast<const T*>(a), static_cast<const unsigned char*>(b_or_arg), \
                                     static_cast<T*>(c), o, H, W, Ho, Wo, kh, kw);                \
  } else {                                                                                        \
    if (k2)                                                                                       \
      plif::max_pool_forward_k2<T>(static_cast<const T*>(a), static_cast<T*>(b_or_arg),          \
                                   static_cast<unsigned char*>(c), o, H, W, Ho, Wo);              \
    else                                                                                          \
      plif::max_pool_forward_any<T>(static_cast<const T*>(a), static_cast<T*>(b_or_arg),         \
                                    static_cast<unsigned char*>(c), o, H, W, Ho, Wo, kh, kw);     \
  }
        PLIF_DISPATCH(dtype, 1, CALL)
#undef CALL
      }
    }
  }
  return 0;
}
