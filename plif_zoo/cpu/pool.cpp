// Spike max-pooling on the CPU over planes [M, H, W] (M = T * N * C), or channels-last planes
// [M, H, W, C] (M = T * N), no padding, floor mode.
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

// Channels-last planes [H, W, C]: the window loop is outside, the loop over the C contiguous
// channels inside, so every update is a long vectorised run.
template <typename T>
inline void take_first_max(const T* __restrict__ v, T* __restrict__ best,
                           uint8_t* __restrict__ at, uint8_t idx, int64_t c) {
    for (int64_t q = 0; q < c; ++q) {
        const bool take = v[q] > best[q] || v[q] != v[q];
        best[q] = take ? v[q] : best[q];
        if (at) at[q] = take ? idx : at[q];
    }
}

// 2x2 windows, channels last: the four candidates of each channel in one pass.
template <typename T, bool KEEP>
inline void forward_window_2x2_nhwc(const T* __restrict__ p0, const T* __restrict__ p1,
                                    const T* __restrict__ p2, const T* __restrict__ p3,
                                    T* __restrict__ y, uint8_t* __restrict__ arg, int64_t c) {
    for (int64_t q = 0; q < c; ++q) {
        const T v[4] = {p0[q], p1[q], p2[q], p3[q]};
        T best = v[0];
        uint8_t at = 0;
        for (uint8_t e = 1; e < 4; ++e) {
            const bool take = v[e] > best || v[e] != v[e];
            best = take ? v[e] : best;
            at = take ? e : at;
        }
        y[q] = best;
        if (KEEP) arg[q] = at;
    }
}

template <typename T>
void pool_forward_nhwc(const T* x, T* y, uint8_t* arg, int64_t planes, int64_t h, int64_t w,
                       int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int threads) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (planes > 1)
    for (int64_t m = 0; m < planes; ++m) {
        for (int64_t i = 0; i < ho; ++i) {
            for (int64_t j = 0; j < wo; ++j) {
                const int64_t o = ((m * ho + i) * wo + j) * c;
                const T* win = x + ((m * h + i * sh) * w + j * sw) * c;
                uint8_t* at = arg ? arg + o : nullptr;
                if (kh == 2 && kw == 2) {
                    const T* p2 = win + w * c;
                    if (at) {
                        forward_window_2x2_nhwc<T, true>(win, win + c, p2, p2 + c, y + o, at, c);
                    } else {
                        forward_window_2x2_nhwc<T, false>(win, win + c, p2, p2 + c, y + o, at, c);
                    }
                    continue;
                }
                for (int64_t q = 0; q < c; ++q) y[o + q] = win[q];
                if (at) memset(at, 0, c);
                for (int64_t a = 0; a < kh; ++a) {
                    for (int64_t b = a ? 0 : 1; b < kw; ++b) {
                        take_first_max(win + (a * w + b) * c, y + o, at,
                                       static_cast<uint8_t>(a * kw + b), c);
                    }
                }
            }
        }
    }
}

template <typename T>
void pool_backward_nhwc(const T* grad_y, const uint8_t* arg, T* grad_x, int64_t planes,
                        int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int threads) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
    const bool tiles = kh == sh && kw == sw;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (planes > 1)
    for (int64_t m = 0; m < planes; ++m) {
        T* gx = grad_x + m * h * w * c;
        if (tiles) {  // every covered element written once; the floor-mode margins zeroed
            for (int64_t r = ho * kh; r < h; ++r) memset(gx + r * w * c, 0, sizeof(T) * w * c);
            for (int64_t r = 0; r < ho * kh; ++r) {
                memset(gx + (r * w + wo * kw) * c, 0, sizeof(T) * (w - wo * kw) * c);
            }
        } else {
            memset(gx, 0, sizeof(T) * h * w * c);
        }
        for (int64_t i = 0; i < ho; ++i) {
            for (int64_t j = 0; j < wo; ++j) {
                const int64_t o = ((m * ho + i) * wo + j) * c;
                const T* __restrict__ g = grad_y + o;
                const uint8_t* __restrict__ at = arg + o;
                for (int64_t a = 0; a < kh; ++a) {
                    for (int64_t b = 0; b < kw; ++b) {
                        T* __restrict__ dst = gx + ((i * sh + a) * w + j * sw + b) * c;
                        const uint8_t idx = static_cast<uint8_t>(a * kw + b);
                        if (tiles) {
                            for (int64_t q = 0; q < c; ++q) dst[q] = at[q] == idx ? g[q] : T(0);
                        } else {
                            for (int64_t q = 0; q < c; ++q) dst[q] += at[q] == idx ? g[q] : T(0);
                        }
                    }
                }
            }
        }
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

#define PLIF_POOL_NHWC_EXPORT(SUFFIX, T)                                                       \
    extern "C" void plif_pool_forward_nhwc_##SUFFIX(const T* x, T* y, uint8_t* arg,            \
                                                    int64_t planes, int64_t h, int64_t w,      \
                                                    int64_t c, int64_t kh, int64_t kw,         \
                                                    int64_t sh, int64_t sw, int threads) {     \
        pool_forward_nhwc<T>(x, y, arg, planes, h, w, c, kh, kw, sh, sw, threads);             \
    }                                                                                          \
    extern "C" void plif_pool_backward_nhwc_##SUFFIX(                                          \
        const T* grad_y, const uint8_t* arg, T* grad_x, int64_t planes, int64_t h, int64_t w,  \
        int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int threads) {              \
        pool_backward_nhwc<T>(grad_y, arg, grad_x, planes, h, w, c, kh, kw, sh, sw, threads);  \
    }

PLIF_POOL_EXPORT(f32, float)
PLIF_POOL_EXPORT(f64, double)
PLIF_POOL_NHWC_EXPORT(f32, float)
PLIF_POOL_NHWC_EXPORT(f64, double)
