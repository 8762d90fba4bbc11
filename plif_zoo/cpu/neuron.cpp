// Multi-step PLIF/LIF forward and backward on the CPU, over the math of neuron_math.h.
//
// Tensors are contiguous [T, N] (N = all neurons of one step); X may also be one [N] fed to
// every step (a static image's encoding), so it is never copied T times. Neurons are cut into
// chunks; each OpenMP thread takes chunks and walks T with the chunk's state in local arrays.
// The forward writes only the spikes (and V when asked). The backward reads X again and
// recomputes H and V[t-1] of its chunk into a small local buffer, then runs the reverse-time
// recurrence: on the CPU, saving X (which the caller holds anyway) beats writing and reading
// back a fresh H tensor.
// dL/dk is summed per chunk in double, then over chunks in chunk order: the result does not
// depend on the number of threads, and two backward passes give bit-identical gradients.
// The options are template parameters so that each inner loop is branch-free and vectorises.
#include <stdint.h>
#include <stdlib.h>

#include "neuron_math.h"

namespace {

// Chunks are wide because every step is a separate row of memory: long runs per row let the
// hardware prefetchers stream (measured: 512-neuron chunks were 20-40% slower).
constexpr int64_t FORWARD_WIDTH = 4096;
constexpr int64_t MAX_BACKWARD_WIDTH = 4096;

// Chunk width for the backward: its local [3T + 3, width] buffers stay near 400 KiB (L2).
int64_t backward_width(int64_t steps) {
    int64_t width = steps > 0 ? 32768 / steps : MAX_BACKWARD_WIDTH;
    width = width > MAX_BACKWARD_WIDTH ? MAX_BACKWARD_WIDTH : width;
    return width < 16 ? 16 : width - width % 16;
}

// One time step of one chunk. The loops live in functions of their own so that __restrict__
// tells the compiler the arrays do not overlap, which lets it vectorise them.
template <typename T>
inline void forward_step(const T* __restrict__ x, T* __restrict__ s, T* __restrict__ v,
                         int64_t m, T k, const plif_params<T>& p) {
    for (int64_t i = 0; i < m; ++i) {
        const T h = plif_charge(v[i], x[i], k, p);
        const T spike = plif_fire(h, p);
        v[i] = plif_reset(h, spike, p);
        s[i] = spike;
    }
}

// Forward again, keeping H[t] and V[t-1] for the reverse pass; v is the state.
template <typename T>
inline void recompute_step(const T* __restrict__ x, T* __restrict__ h_out, T* __restrict__ v_prev,
                           T* __restrict__ v, int64_t m, T k, const plif_params<T>& p) {
    for (int64_t i = 0; i < m; ++i) {
        const T h = plif_charge(v[i], x[i], k, p);
        v_prev[i] = v[i];
        h_out[i] = h;
        v[i] = plif_reset(h, plif_fire(h, p), p);
    }
}

// carry holds dL/dV[t] on entry and dL/dV[t-1] on exit; acc accumulates dL/dk per neuron.
template <typename T>
inline void reverse_step(const T* __restrict__ h, const T* __restrict__ v_prev,
                         const T* __restrict__ grad_s, const T* __restrict__ grad_v,
                         T* __restrict__ grad_x, T* __restrict__ acc, T* __restrict__ carry,
                         int64_t m, T k, const plif_params<T>& p) {
    for (int64_t i = 0; i < m; ++i) {
        const T gh = plif_grad_h(h[i], grad_s[i], carry[i] + grad_v[i], p);
        grad_x[i] = plif_grad_x(gh, k, p);
        acc[i] += plif_grad_k_term(gh, h[i], v_prev[i], k, p);
        carry[i] = plif_grad_v_prev(gh, k);
    }
}

template <typename T, bool HARD, bool DECAY>
void forward(const T* x, int64_t x_step, const T* v_init, T k, T* s, T* v_seq, T* v_last,
             int64_t steps, int64_t n, T v_th, T v_reset, int threads) {
    const int64_t chunks = (n + FORWARD_WIDTH - 1) / FORWARD_WIDTH;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
        // built here, not outside the parallel region, so its constant fields stay constant
        const plif_params<T> p = plif_make_params<T>(v_th, v_reset, T(0), 0, HARD, DECAY, 0);
        const int64_t lo = c * FORWARD_WIDTH;
        const int64_t m = n - lo < FORWARD_WIDTH ? n - lo : FORWARD_WIDTH;
        T v[FORWARD_WIDTH];
        for (int64_t i = 0; i < m; ++i) v[i] = v_init[lo + i];
        for (int64_t t = 0; t < steps; ++t) {
            forward_step(x + t * x_step + lo, s + t * n + lo, v, m, k, p);
            if (v_seq) {
                for (int64_t i = 0; i < m; ++i) v_seq[t * n + lo + i] = v[i];
            }
        }
        for (int64_t i = 0; i < m; ++i) v_last[lo + i] = v[i];
    }
}

// grad_s, grad_v_seq and grad_v_last may be null (no gradient): they count as zeros.
// grad_v_init may be null (not wanted). SG = ANY_SG reads the surrogate id at run time.
// x_step = 0 means one X [N] feeds every step; grad_x is then [N], the sum over steps.
constexpr int ANY_SG = -1;

template <typename T, int SG, bool HARD, bool DECAY, bool DETACH>
int backward(const T* x, int64_t x_step, const T* v_init, T k, const T* grad_s,
             const T* grad_v_seq,
             const T* grad_v_last, T* grad_x, T* grad_v_init, double* grad_k, int64_t steps,
             int64_t n, T v_th, T v_reset, T alpha, int sg_id, int threads) {
    const int sg = SG == ANY_SG ? sg_id : SG;
    const int64_t width = backward_width(steps);
    const int64_t chunks = (n + width - 1) / width;
    double* partial = static_cast<double*>(malloc(sizeof(double) * (chunks > 0 ? chunks : 1)));
    if (!partial) return 1;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (chunks > 1)
    {
        const plif_params<T> p = plif_make_params<T>(v_th, v_reset, alpha, sg, HARD, DECAY, DETACH);
        // per thread: H[t], V[t-1] and dL/dX[t] of one chunk, the carry, dL/dk per neuron, zeros
        T* buf = static_cast<T*>(malloc(sizeof(T) * (3 * steps + 3) * width));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 8)
        for (int64_t c = 0; c < chunks; ++c) {
            if (!buf) continue;
            const int64_t lo = c * width;
            const int64_t m = n - lo < width ? n - lo : width;
            T* hb = buf;
            T* vb = hb + steps * width;
            T* gxb = vb + steps * width;
            T* carry = gxb + steps * width;
            T* acc = carry + width;
            T* zeros = acc + width;
            for (int64_t i = 0; i < m; ++i) {
                carry[i] = v_init[lo + i];  // the state, until the reverse pass reuses it
                acc[i] = T(0);
                zeros[i] = T(0);
            }
            for (int64_t t = 0; t < steps; ++t) {
                recompute_step(x + t * x_step + lo, hb + t * width, vb + t * width, carry, m, k, p);
            }
            for (int64_t i = 0; i < m; ++i) carry[i] = grad_v_last ? grad_v_last[lo + i] : T(0);
            for (int64_t t = steps - 1; t >= 0; --t) {
                const int64_t o = t * n + lo;
                const T* gs = grad_s ? grad_s + o : zeros;
                const T* gvs = grad_v_seq ? grad_v_seq + o : zeros;
                T* gx = x_step ? grad_x + o : gxb + t * width;
                reverse_step(hb + t * width, vb + t * width, gs, gvs, gx, acc, carry, m, k, p);
            }
            if (!x_step) {  // sum over steps in step order, as autograd sums an expand
                for (int64_t i = 0; i < m; ++i) grad_x[lo + i] = gxb[i];
                for (int64_t t = 1; t < steps; ++t) {
                    for (int64_t i = 0; i < m; ++i) grad_x[lo + i] += gxb[t * width + i];
                }
            }
            double sum = 0.0;
            for (int64_t i = 0; i < m; ++i) sum += static_cast<double>(acc[i]);
            partial[c] = sum;
            if (grad_v_init) {
                for (int64_t i = 0; i < m; ++i) grad_v_init[lo + i] = carry[i];
            }
        }
        free(buf);
    }
    double total = 0.0;
    for (int64_t c = 0; c < chunks; ++c) total += partial[c];
    *grad_k = total;
    free(partial);
    return failed;
}

template <typename T>
using forward_fn = void (*)(const T*, int64_t, const T*, T, T*, T*, T*, int64_t, int64_t, T, T,
                            int);
template <typename T>
using backward_fn = int (*)(const T*, int64_t, const T*, T, const T*, const T*, const T*, T*, T*,
                            double*, int64_t, int64_t, T, T, T, int, int);

template <typename T>
forward_fn<T> pick_forward(int hard, int decay) {
    static const forward_fn<T> table[4] = {
        forward<T, false, false>, forward<T, false, true>,
        forward<T, true, false>, forward<T, true, true>,
    };
    return table[(hard ? 2 : 0) + (decay ? 1 : 0)];
}

template <typename T, int SG>
backward_fn<T> pick_options(int hard, int decay, int detach) {
    static const backward_fn<T> table[8] = {
        backward<T, SG, false, false, false>, backward<T, SG, false, false, true>,
        backward<T, SG, false, true, false>,  backward<T, SG, false, true, true>,
        backward<T, SG, true, false, false>,  backward<T, SG, true, false, true>,
        backward<T, SG, true, true, false>,   backward<T, SG, true, true, true>,
    };
    return table[(hard ? 4 : 0) + (decay ? 2 : 0) + (detach ? 1 : 0)];
}

// The paper's ATan and SpikingJelly's default Sigmoid get float32 loops of their own (they
// vectorise); other surrogates and float64 share one loop per option set, which keeps the
// first-use compile short.
template <typename T>
backward_fn<T> pick_backward(int sg_id, int hard, int decay, int detach) {
    if (sg_id < PLIF_SG_ATAN || sg_id > PLIF_SG_ERF) return nullptr;
    if (sizeof(T) == sizeof(float)) {
        if (sg_id == PLIF_SG_ATAN) return pick_options<T, PLIF_SG_ATAN>(hard, decay, detach);
        if (sg_id == PLIF_SG_SIGMOID) return pick_options<T, PLIF_SG_SIGMOID>(hard, decay, detach);
    }
    return pick_options<T, ANY_SG>(hard, decay, detach);
}

}  // namespace

// Exported C ABI (see _build.py for the ctypes signatures). The backward returns 0 on
// success, 1 when out of memory, 2 for an unknown surrogate id.
#define PLIF_EXPORT(SUFFIX, T)                                                                 \
    extern "C" void plif_forward_##SUFFIX(const T* x, int64_t x_step, const T* v_init, T k,    \
                                          T* s, T* v_seq, T* v_last, int64_t steps, int64_t n, \
                                          T v_th, T v_reset, int hard, int decay_input,        \
                                          int threads) {                                       \
        pick_forward<T>(hard, decay_input)(x, x_step, v_init, k, s, v_seq, v_last, steps, n,   \
                                           v_th, v_reset, threads);                            \
    }                                                                                          \
    extern "C" int plif_backward_##SUFFIX(                                                     \
        const T* x, int64_t x_step, const T* v_init, T k, const T* grad_s,                     \
        const T* grad_v_seq, const T* grad_v_last, T* grad_x, T* grad_v_init, double* grad_k,  \
        int64_t steps, int64_t n, T v_th, T v_reset, T alpha, int sg_id, int hard,             \
        int decay_input, int detach, int threads) {                                            \
        backward_fn<T> fn = pick_backward<T>(sg_id, hard, decay_input, detach);                \
        if (!fn) return 2;                                                                     \
        return fn(x, x_step, v_init, k, grad_s, grad_v_seq, grad_v_last, grad_x, grad_v_init,  \
                  grad_k, steps, n, v_th, v_reset, alpha, sg_id, threads);                     \
    }

PLIF_EXPORT(f32, float)
PLIF_EXPORT(f64, double)
