// Spike max-pooling on the CPU over planes [M, H, W] (M = T * N * C), no padding, floor mode.
//
// The forward keeps one byte per output for backward: the position of the first maximal
// element inside its window (row-major, the element nn.MaxPool2d picks), so windows hold at
// most 256 elements. The backward sends each output gradient to that element (writing whole
// windows in one pass when they tile the plane); planes are independent, so threads never
// write the same element and the result is deterministic.
#include <stdint.h>
#include <string.h>

namespace {

template <typename T>
void pool_forward(const T* x, T* y, uint8_t* arg, int64_t planes, int64_t h, int64_t w,
                  int64_t kh, int64_t kw, int64_t sh, int64_t sw, int threads) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (planes > 1)
    for (int64_t m = 0; m < planes; ++m) {
        const T* xp = x + m * h * w;
        T* yp = y + m * ho * wo;
        uint8_t* ap = arg ? arg + m * ho * wo : nullptr;
        for (int64_t i = 0; i < ho; ++i) {
            for (int64_t j = 0; j < wo; ++j) {
                const T* win = xp + i * sh * w + j * sw;
                T best = win[0];
                int best_at = 0;
                for (int64_t a = 0; a < kh; ++a) {
                    for (int64_t b = 0; b < kw; ++b) {
                        const T v = win[a * w + b];
                        if (v > best || v != v) {  // nan wins, as in nn.MaxPool2d
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
}

template <typename T>
void pool_backward(const T* grad_y, const uint8_t* arg, T* grad_x, int64_t planes, int64_t h,
                   int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int threads) {
    const int64_t ho = (h - kh) / sh + 1, wo = (w - kw) / sw + 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (planes > 1)
    for (int64_t m = 0; m < planes; ++m) {
        T* gx = grad_x + m * h * w;
        const T* gy = grad_y + m * ho * wo;
        const uint8_t* ap = arg + m * ho * wo;
        if (kh == sh && kw == sw) {  // windows tile the plane: write every element once
            for (int64_t i = 0; i < ho; ++i) {
                for (int64_t a = 0; a < kh; ++a) {
                    T* row = gx + (i * kh + a) * w;
                    for (int64_t j = 0; j < wo; ++j) {
                        const int64_t at = ap[i * wo + j];
                        const T g = gy[i * wo + j];
                        for (int64_t b = 0; b < kw; ++b) row[j * kw + b] = a * kw + b == at ? g : T(0);
                    }
                    for (int64_t col = wo * kw; col < w; ++col) row[col] = T(0);
                }
            }
            memset(gx + ho * kh * w, 0, sizeof(T) * (h - ho * kh) * w);
            continue;
        }
        memset(gx, 0, sizeof(T) * h * w);
        for (int64_t i = 0; i < ho; ++i) {
            for (int64_t j = 0; j < wo; ++j) {
                const int64_t at = ap[i * wo + j];
                gx[(i * sh + at / kw) * w + j * sw + at % kw] += gy[i * wo + j];
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

PLIF_POOL_EXPORT(f32, float)
PLIF_POOL_EXPORT(f64, double)
