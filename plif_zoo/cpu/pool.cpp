// Spike max-pooling on the CPU over planes [M, H, W] (M = T * N * C), no padding, floor mode.
//
// The forward keeps one byte per output for backward: the position of the first maximal
// element inside its window (row-major, the element nn.MaxPool2d picks), so windows hold at
// most 256 elements. The backward sends each output gradient to that element (writing whole
// windows in one pass when they tile the plane); planes are independent, so threads never
// write the same element and the result is deterministic.
#include <stdint.h>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// Rows here are short (14 outputs for 28x28 planes): narrow vectors waste less on remainders.
#pragma GCC target("prefer-vector-width=128")
#endif
#include <string.h>

namespace {

// The paper's 2x2 / stride 2 pooling, one output row: branch-free, so it vectorises.
template <typename T, bool KEEP>
inline void forward_row_2x2(const T* __restrict__ r0, const T* __restrict__ r1, T* __restrict__ y,
                            uint8_t* __restrict__ arg, int64_t wo) {
    for (int64_t j = 0; j < wo; ++j) {
        const T v[4] = {r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]};
        T best = v[0];
        uint8_t at = 0;
        for (uint8_t q = 1; q < 4; ++q) {
            const bool take = v[q] > best || v[q] != v[q];  // nan wins, as in nn.MaxPool2d
            best = take ? v[q] : best;
            at = take ? q : at;
        }
        y[j] = best;
        if (KEEP) arg[j] = at;
    }
}

template <typename T>
inline void backward_row_2x2(const T* __restrict__ gy, const uint8_t* __restrict__ arg,
                             T* __restrict__ g0, T* __restrict__ g1, int64_t wo) {
    for (int64_t j = 0; j < wo; ++j) {
        const T g = gy[j];
        const uint8_t at = arg[j];
        g0[2 * j] = at == 0 ? g : T(0);
        g0[2 * j + 1] = at == 1 ? g : T(0);
        g1[2 * j] = at == 2 ? g : T(0);
        g1[2 * j + 1] = at == 3 ? g : T(0);
    }
}

template <typename T>
void forward_plane(const T* xp, T* yp, uint8_t* ap, int64_t h, int64_t w, int64_t kh,
                   int64_t kw, int64_t sh, int64_t sw) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {
        for (int64_t i = 0; i < ho; ++i) {
            const T* r0 = xp + 2 * i * w;
            if (ap) {
                forward_row_2x2<T, true>(r0, r0 + w, yp + i * wo, ap + i * wo, wo);
            } else {
                forward_row_2x2<T, false>(r0, r0 + w, yp + i * wo, nullptr, wo);
            }
        }
        return;
    }
    for (int64_t i = 0; i < ho; ++i) {
        for (int64_t j = 0; j < wo; ++j) {
            const T* win = xp + i * sh * w + j * sw;
            T best = win[0];
            int best_at = 0;
            for (int64_t a = 0; a < kh; ++a) {
                for (int64_t b = 0; b < kw; ++b) {
                    const T v = win[a * w + b];
                    if (v > best || v != v) {
                        best = v;
                        best_at = static_cast<int>(a * kw + b);
                    }
                }
            }
            yp[i * wo + j] = best;
            if (ap) ap[i * wo + j] = static_cast<uint8_t>(best_at);
        }
    }
}

template <typename T>
void backward_plane(const T* gy, const uint8_t* ap, T* gx, int64_t h, int64_t w, int64_t kh,
                    int64_t kw, int64_t sh, int64_t sw) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {  // windows tile the plane: one write each
        for (int64_t i = 0; i < ho; ++i) {
            T* g0 = gx + 2 * i * w;
            backward_row_2x2(gy + i * wo, ap + i * wo, g0, g0 + w, wo);
            if (w > 2 * wo) g0[w - 1] = g0[2 * w - 1] = T(0);  // floor mode: odd width
        }
        if (h > 2 * ho) memset(gx + 2 * ho * w, 0, sizeof(T) * w);
        return;
    }
    memset(gx, 0, sizeof(T) * h * w);
    for (int64_t i = 0; i < ho; ++i) {
        for (int64_t j = 0; j < wo; ++j) {
            const int64_t at = ap[i * wo + j];
            gx[(i * sh + at / kw) * w + j * sw + at % kw] += gy[i * wo + j];
        }
    }
}

template <typename T>
void pool_forward(const T* x, T* y, uint8_t* arg, int64_t planes, int64_t h, int64_t w,
                  int64_t kh, int64_t kw, int64_t sh, int64_t sw, int threads) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) if (planes > 1)
    for (int64_t m = 0; m < planes; ++m) {
        forward_plane(x + m * h * w, y + m * ho * wo, arg ? arg + m * ho * wo : nullptr, h, w,
                      kh, kw, sh, sw);
    }
}

template <typename T>
void pool_backward(const T* grad_y, const uint8_t* arg, T* grad_x, int64_t planes, int64_t h,
                   int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int threads) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) if (planes > 1)
    for (int64_t m = 0; m < planes; ++m) {
        backward_plane(grad_y + m * ho * wo, arg + m * ho * wo, grad_x + m * h * w, h, w, kh, kw,
                       sh, sw);
    }
}

}  // namespace

#define PLIF_POOL_EXPORT(SUFFIX, T)                                                            \
    extern "C" void plif_pool_forward_##SUFFIX(const T* x, T* y, uint8_t* arg, int64_t planes, \
                                               int64_t h, int64_t w, int64_t kh, int64_t kw,   \
                                               int64_t sh, int64_t sw, int threads) {          \
        pool_forward<T>(x, y, arg, planes, h, w, kh, kw, sh, sw, threads);                     \
    }                                                                                          \
    extern "C" void plif_pool_backward_##SUFFIX(const T* grad_y, const uint8_t* arg,           \
                                                T* grad_x, int64_t planes, int64_t h,          \
                                                int64_t w, int64_t kh, int64_t kw, int64_t sh, \
                                                int64_t sw, int threads) {                     \
        pool_backward<T>(grad_y, arg, grad_x, planes, h, w, kh, kw, sh, sw, threads);          \
    }

PLIF_POOL_EXPORT(f32, float)
PLIF_POOL_EXPORT(f64, double)
