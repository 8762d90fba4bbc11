/* neuron_math.h -- per-neuron PLIF/LIF math (paper eqs. 2-17), shared by the CuPy kernels
 * (plif_zoo/cuda/, nvcc/NVRTC) and the compiled CPU backend (plif_zoo/cpu/, g++), so the
 * two never drift apart. tests/test_cpu_backend.py proves this math against the torch
 * reference (plif_zoo/neurons.py, _TorchMultiStep) on the CPU.
 *
 * Stable API (T is float or double; half/bf16 data is converted to float by the caller, so
 * state and accumulation are float32). Every function is a pure per-neuron expression, in the
 * torch reference's operation order, so spikes are bit-identical when compiled without
 * fp contraction (-ffp-contract=off / --fmad=false).
 *
 *   PLIF_SG_ATAN ... PLIF_SG_ERF        surrogate ids, given by the compiler as -D flags
 *                                       from plif_zoo/_kernel_spec.py (the one source), which
 *                                       maps SpikingJelly surrogate modules to (id, alpha)
 *   plif_params<T>                      v_th, v_reset (0 for soft reset), alpha, sg_id,
 *                                       hard_reset, decay_input, detach_reset
 *   plif_make_params<T>(...)            builds plif_params from scalar kernel arguments
 *   plif_charge(v, x, k, p)       -> H[t] from V[t-1] and X[t]           (eq. 6)
 *   plif_fire(h, p)               -> S[t] = (H[t] >= V_th) as 0 / 1      (eq. 3)
 *   plif_reset(h, s, p)           -> V[t]                                 (eq. 4 / soft)
 *   plif_v_prev(h_prev, p)        -> V[t-1] recomputed from H[t-1] (forward saves only H)
 *   plif_surrogate_grad(x, alpha, sg_id) -> dS/dH at x = H - V_th
 *   plif_grad_h(h, grad_s, grad_v, p) -> dL/dH[t]; grad_v = dL/dV[t] (carry + direct)
 *   plif_grad_x(grad_h, k, p)     -> dL/dX[t]
 *   plif_grad_k_term(grad_h, h, v_prev, k, p) -> this step's term of dL/dk (sum it)
 *   plif_grad_v_prev(grad_h, k)   -> dL/dV[t-1] through the charge (the reverse-time carry)
 *
 * Forward, one neuron:   v = v_init; for t: h = plif_charge(v, x[t], k, p);
 *                        s = plif_fire(h, p); v = plif_reset(h, s, p);
 * Backward, one neuron:  carry = dL/dV[T-1] (or 0); for t = T-1 .. 0:
 *                        v_prev = t ? plif_v_prev(h[t-1], p) : v_init;
 *                        gh = plif_grad_h(h[t], grad_s[t], carry (+ grad_v_seq[t]), p);
 *                        grad_x[t] = plif_grad_x(gh, k, p);
 *                        grad_k += plif_grad_k_term(gh, h[t], v_prev, k, p);
 *                        carry = plif_grad_v_prev(gh, k);
 *                        and finally grad_v_init = carry.
 */
#ifndef PLIF_ZOO_NEURON_MATH_H
#define PLIF_ZOO_NEURON_MATH_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PLIF_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define PLIF_HD inline
#endif

/* Surrogate ids: defined by the build (-DPLIF_SG_ATAN=0 ...) from SURROGATE_IDS in
 * plif_zoo/_kernel_spec.py, so the Python side and both compilers share one list. Each takes
 * one parameter, alpha:
 *   PLIF_SG_ATAN                 alpha/2 / (1 + (pi/2 * alpha * x)^2)
 *   PLIF_SG_SIGMOID              alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))
 *   PLIF_SG_SOFT_SIGN            1 / (2 alpha (1/alpha + |x|)^2)
 *   PLIF_SG_SUPER_SPIKE          alpha / (|x| + 1)^2
 *   PLIF_SG_PIECEWISE_QUADRATIC  |x| > 1/alpha ? 0 : alpha - alpha^2 |x|
 *   PLIF_SG_PIECEWISE_EXP        alpha/2 * exp(-alpha |x|)
 *   PLIF_SG_ERF                  alpha / sqrt(pi) * exp(-(alpha x)^2)
 */
#if !defined(PLIF_SG_ATAN) || !defined(PLIF_SG_SIGMOID) || !defined(PLIF_SG_SOFT_SIGN) ||     \
    !defined(PLIF_SG_SUPER_SPIKE) || !defined(PLIF_SG_PIECEWISE_QUADRATIC) ||                  \
    !defined(PLIF_SG_PIECEWISE_EXP) || !defined(PLIF_SG_ERF)
#error "compile with the -DPLIF_SG_*=n flags of plif_zoo._kernel_spec.c_defines()"
#endif

template <typename T>
struct plif_params {
    T v_th;
    T v_reset;  /* the reset potential; 0 for soft reset (it is also the leak's rest level) */
    T alpha;    /* the surrogate's parameter */
    int sg_id;  /* PLIF_SG_* */
    bool hard_reset;
    bool decay_input;
    bool detach_reset;
};

template <typename T>
PLIF_HD plif_params<T> plif_make_params(T v_th, T v_reset, T alpha, int sg_id, int hard_reset,
                                         int decay_input, int detach_reset) {
    plif_params<T> p;
    p.v_th = v_th;
    p.v_reset = hard_reset ? v_reset : T(0);
    p.alpha = alpha;
    p.sg_id = sg_id;
    p.hard_reset = hard_reset != 0;
    p.decay_input = decay_input != 0;
    p.detach_reset = detach_reset != 0;
    return p;
}

PLIF_HD float plif_exp(float x) { return expf(x); }
PLIF_HD double plif_exp(double x) { return exp(x); }
PLIF_HD float plif_abs(float x) { return fabsf(x); }
PLIF_HD double plif_abs(double x) { return fabs(x); }

/* H[t] = V[t-1] + k (X[t] - (V[t-1] - V_reset))   or, without decay_input,
 * H[t] = V[t-1] - k (V[t-1] - V_reset) + X[t]. */
template <typename T>
PLIF_HD T plif_charge(T v, T x, T k, const plif_params<T>& p) {
    if (p.decay_input) return v + (x - (v - p.v_reset)) * k;
    return v - (v - p.v_reset) * k + x;
}

template <typename T>
PLIF_HD T plif_fire(T h, const plif_params<T>& p) {
    return h >= p.v_th ? T(1) : T(0);
}

/* Written as the reference writes it (not as a select) so inf/nan propagate the same way. */
template <typename T>
PLIF_HD T plif_reset(T h, T s, const plif_params<T>& p) {
    if (p.hard_reset) return s * p.v_reset + (T(1) - s) * h;
    return h - s * p.v_th;
}

template <typename T>
PLIF_HD T plif_v_prev(T h_prev, const plif_params<T>& p) {
    return plif_reset(h_prev, plif_fire(h_prev, p), p);
}

template <typename T>
PLIF_HD T plif_surrogate_grad(T x, T alpha, int sg_id) {
    switch (sg_id) {
        case PLIF_SG_ATAN: {
            const T a = alpha / T(2);
            const T ax = T(3.14159265358979323846) * a * x;
            return a / (T(1) + ax * ax);
        }
        case PLIF_SG_SIGMOID: {
            const T s = T(1) / (T(1) + plif_exp(-(x * alpha)));
            return (T(1) - s) * s * alpha;
        }
        case PLIF_SG_SOFT_SIGN: {
            const T d = T(1) / alpha + plif_abs(x);
            return T(1) / (T(2) * alpha * (d * d));
        }
        case PLIF_SG_SUPER_SPIKE: {
            const T d = plif_abs(x) + T(1);
            return alpha / (d * d);
        }
        case PLIF_SG_PIECEWISE_QUADRATIC: {
            const T ax = plif_abs(x);
            return ax > T(1) / alpha ? T(0) : -(alpha * alpha) * ax + alpha;
        }
        case PLIF_SG_PIECEWISE_EXP:
            return alpha / T(2) * plif_exp(-alpha * plif_abs(x));
        case PLIF_SG_ERF: {
            const T ax = x * alpha;
            return plif_exp(-(ax * ax)) * (alpha / T(1.77245385090551602730));
        }
        default:
            return T(0);
    }
}

/* dL/dH[t] = dL/dS[t] dS/dH + dL/dV[t] dV/dH (eqs. 12-13); detach_reset drops the reset's
 * dependence on S[t]. */
template <typename T>
PLIF_HD T plif_grad_h(T h, T grad_s, T grad_v, const plif_params<T>& p) {
    const T sg = plif_surrogate_grad(h - p.v_th, p.alpha, p.sg_id);
    T dv_dh;
    if (!p.hard_reset) {
        dv_dh = p.detach_reset ? T(1) : T(1) - p.v_th * sg;
    } else {
        dv_dh = T(1) - plif_fire(h, p);
        if (!p.detach_reset) dv_dh = dv_dh + (p.v_reset - h) * sg;
    }
    return grad_s * sg + grad_v * dv_dh;
}

template <typename T>
PLIF_HD T plif_grad_x(T grad_h, T k, const plif_params<T>& p) {
    return p.decay_input ? grad_h * k : grad_h;
}

/* dH/dk = X[t] - (V[t-1] - V_reset) = (H[t] - V[t-1]) / k with decay_input,
 * -(V[t-1] - V_reset) without. */
template <typename T>
PLIF_HD T plif_grad_k_term(T grad_h, T h, T v_prev, T k, const plif_params<T>& p) {
    if (p.decay_input) return grad_h * ((h - v_prev) / k);
    return -(grad_h * (v_prev - p.v_reset));
}

template <typename T>
PLIF_HD T plif_grad_v_prev(T grad_h, T k) {
    return grad_h * (T(1) - k);
}

#endif /* PLIF_ZOO_NEURON_MATH_H */
