// Multi-step PLIF/LIF forward and backward on the CPU, over the math of neuron_math.h.
//
// Tensors are contiguous [T, N] (N = all neurons of one step). Neurons are cut into chunks of
// CHUNK; each OpenMP thread takes whole chunks and walks T once per pass, keeping the chunk's
// state in a local array, so every pass streams its inputs and outputs exactly once.
// dL/dk is summed per chunk in double, then over chunks in chunk order: the result does not
// depend on the number of threads and two backward passes give bit-identical gradients.
#include <stdint.h>
#include <stdlib.h>

#include "neuron_math.h"

namespace {

constexpr int64_t CHUNK = 512;

template <typename T>
void forward(const T* x, const T* v_init, T k, T* s, T* h_out, T* v_seq, T* v_last,
             int64_t steps, int64_t n, plif_params<T> p, int threads) {
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t lo = c * CHUNK;
        const int64_t m = n - lo < CHUNK ? n - lo : CHUNK;
        T v[CHUNK];
        for (int64_t i = 0; i < m; ++i) v[i] = v_init[lo + i];
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t o = t * n + lo;
            for (int64_t i = 0; i < m; ++i) {
                const T h = plif_charge(v[i], x[o + i], k, p);
                const T spike = plif_fire(h, p);
                v[i] = plif_reset(h, spike, p);
                s[o + i] = spike;
                if (h_out) h_out[o + i] = h;
                if (v_seq) v_seq[o + i] = v[i];
            }
        }
        for (int64_t i = 0; i < m; ++i) v_last[lo + i] = v[i];
    }
}

// grad_s, grad_v_seq, grad_v_last and grad_v_init may be null (no gradient / not wanted).
template <typename T>
int backward(const T* grad_s, const T* grad_v_seq, const T* grad_v_last, const T* h,
             const T* v_init, T k, T* grad_x, T* grad_v_init, double* grad_k, int64_t steps,
             int64_t n, plif_params<T> p, int threads) {
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    double* partial = static_cast<double*>(malloc(sizeof(double) * (chunks > 0 ? chunks : 1)));
    if (!partial) return 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t lo = c * CHUNK;
        const int64_t m = n - lo < CHUNK ? n - lo : CHUNK;
        T carry[CHUNK];  // dL/dV[t] arriving from step t + 1
        T acc[CHUNK];    // this neuron's dL/dk
        for (int64_t i = 0; i < m; ++i) {
            carry[i] = grad_v_last ? grad_v_last[lo + i] : T(0);
            acc[i] = T(0);
        }
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t o = t * n + lo;
            for (int64_t i = 0; i < m; ++i) {
                const T ht = h[o + i];
                const T v_prev = t > 0 ? plif_v_prev(h[o - n + i], p) : v_init[lo + i];
                const T gv = grad_v_seq ? carry[i] + grad_v_seq[o + i] : carry[i];
                const T gs = grad_s ? grad_s[o + i] : T(0);
                const T gh = plif_grad_h(ht, gs, gv, p);
                grad_x[o + i] = plif_grad_x(gh, k, p);
                acc[i] += plif_grad_k_term(gh, ht, v_prev, k, p);
                carry[i] = plif_grad_v_prev(gh, k);
            }
        }
        double sum = 0.0;
        for (int64_t i = 0; i < m; ++i) {
            sum += static_cast<double>(acc[i]);
            if (grad_v_init) grad_v_init[lo + i] = carry[i];
        }
        partial[c] = sum;
    }
    double total = 0.0;
    for (int64_t c = 0; c < chunks; ++c) total += partial[c];
    *grad_k = total;
    free(partial);
    return 0;
}

}  // namespace

#define PLIF_EXPORT(SUFFIX, T)                                                                  \
    extern "C" void plif_forward_##SUFFIX(const T* x, const T* v_init, T k, T* s, T* h,        \
                                          T* v_seq, T* v_last, int64_t steps, int64_t n,       \
                                          T v_th, T v_reset, T alpha, int sg_id, int hard,     \
                                          int decay_input, int detach, int threads) {          \
        forward<T>(x, v_init, k, s, h, v_seq, v_last, steps, n,                                \
                   plif_make_params<T>(v_th, v_reset, alpha, sg_id, hard, decay_input,         \
                                       detach),                                                \
                   threads);                                                                   \
    }                                                                                          \
    extern "C" int plif_backward_##SUFFIX(                                                     \
        const T* grad_s, const T* grad_v_seq, const T* grad_v_last, const T* h,                \
        const T* v_init, T k, T* grad_x, T* grad_v_init, double* grad_k, int64_t steps,        \
        int64_t n, T v_th, T v_reset, T alpha, int sg_id, int hard, int decay_input,           \
        int detach, int threads) {                                                             \
        return backward<T>(grad_s, grad_v_seq, grad_v_last, h, v_init, k, grad_x, grad_v_init, \
                           grad_k, steps, n,                                                   \
                           plif_make_params<T>(v_th, v_reset, alpha, sg_id, hard, decay_input, \
                                               detach),                                        \
                           threads);                                                           \
    }

PLIF_EXPORT(f32, float)
PLIF_EXPORT(f64, double)
