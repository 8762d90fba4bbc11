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
