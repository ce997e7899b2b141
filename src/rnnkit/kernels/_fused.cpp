// The per-step elementwise work of rnnkit's GRU and LSTM kernels, one loop per step.
//
// Each step of a GRU or LSTM layer does about ten elementwise operations on (N, H) tensors
// (the gate nonlinearities, the state update and, backwards, their derivatives). Run as torch
// operations, each is a dispatch and a pass over memory; here each step's work is one loop,
// called from Python through ctypes with raw pointers. The matrix products stay in torch.
//
// The `_seq` functions run a layer direction's whole recurrence in one call: the batch's rows
// are split between the threads of one OpenMP region, and each thread runs every step for its
// rows (the step's product through the BLAS `gemm` whose address torch's CPU library exports,
// then the step's loop). Rows of a batch do not interact, so the threads never wait for each
// other; with one thread this is the per-step loop without Python between the steps.
//
// No torch header is included: the functions take contiguous row-major buffers of float or
// double, which the Python side allocates and checks. The exponential (and, in single precision,
// tanh as a rational function) is written out branch-free so that the compiler can vectorise the
// loops; the results agree with torch's sigmoid and tanh to float rounding, not bitwise.

#include <cstdint>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

template <typename T>
struct Math;

template <>
struct Math<double> {
    static inline double exp(double x) {
        x = x < -708.0 ? -708.0 : x;  // keeps 2^k a normal number; also keeps NaN
        x = x > 708.0 ? 708.0 : x;
        const double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
        const double y = x * 1.4426950408889634 + shifter;
        const double k = y - shifter;
        double r = x - k * 6.93147180369123816490e-01;  // ln 2, high part (exact in k * ln2_hi)
        r = r - k * 1.90821492927058770002e-10;         // ln 2, low part
        // exp(r) for |r| <= ln(2) / 2: the Taylor polynomial of degree 13
        double p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        std::uint64_t bits;
        std::memcpy(&bits, &y, sizeof bits);  // the low bits of y hold k
        bits = (bits + 1023) << 52;            // 2^k
        double scale;
        std::memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }

    // below it tanh's odd Taylor series is more accurate than 1 - 2 / (1 + e^2x)
    static constexpr double small = 0.03;
};

template <>
struct Math<float> {
    static inline float exp(float x) {
        x = x < -87.0f ? -87.0f : x;
        x = x > 88.0f ? 88.0f : x;
        const float shifter = 12582912.0f;  // 1.5 * 2^23
        const float y = x * 1.44269504088896341f + shifter;
        const float k = y - shifter;
        float r = x - k * 0.693359375f;
        r = r + k * 2.12194440e-4f;
        // exp(r) for |r| <= ln(2) / 2 (Cephes' expf polynomial)
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        std::uint32_t bits;
        std::memcpy(&bits, &y, sizeof bits);
        bits = (bits + 127u) << 23;
        float scale;
        std::memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }
};

template <typename T>
inline T sigmoid(T x) {
    return T(1) / (T(1) + Math<T>::exp(-x));
}

template <typename T>
inline T tanh(T x) {
    const T wide = T(1) - T(2) / (T(1) + Math<T>::exp(x + x));
    const T x2 = x * x;
    T series = T(62.0 / 2835.0);
    series = series * x2 - T(17.0 / 315.0);
    series = series * x2 + T(2.0 / 15.0);
    series = series * x2 - T(1.0 / 3.0);
    series = series * x2 * x + x;
    const T magnitude = x < T(0) ? -x : x;
    return magnitude < Math<T>::small ? series : wide;
}

// In single precision a rational function is at least as accurate (within 2.7e-7 of tanh,
// relative, for |x| >= 1e-35; the exponential form: 4.2e-7) and about a third cheaper than the
// exponential with its small-x series: Eigen's fast float tanh, an odd degree-13 polynomial
// over an even degree-6 one, on the input clamped to where tanh rounds to +-1. Below 1e-35,
// p * x underflows into the subnormals and the result is off by at most 3e-43, absolute.
template <>
inline float tanh(float x) {
    const float clamp = 7.90531110763549805f;
    x = x > clamp ? clamp : x;
    x = x < -clamp ? -clamp : x;
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p * x / q;
}

// gates (N, 3H): W_ih x_t in torch's (r, z, n) blocks, overwritten with r, z, n.
// recurrent (N, 3H): W_hh h_{t-1}. The biases (3H each) are added here, so neither product
// needs a copy of its bias first. rec_n (N, H) receives W_hn h_{t-1} + b_hn for the backward
// pass. previous, state (N, H): h_{t-1}, h_t.
template <typename T>
void gru_forward(T* __restrict gates, const T* __restrict recurrent,
                 const T* __restrict bias_ih, const T* __restrict bias_hh,
                 const T* __restrict previous, T* __restrict state, T* __restrict rec_n,
                 std::int64_t batch, std::int64_t hidden) {
    const T* __restrict bi = bias_ih;
    const T* __restrict bh = bias_hh;
    for (std::int64_t b = 0; b < batch; ++b) {
        T* __restrict g = gates + b * 3 * hidden;
        const T* __restrict rec = recurrent + b * 3 * hidden;
        const T* __restrict prev = previous + b * hidden;
        T* __restrict h = state + b * hidden;
        T* __restrict kept = rec_n + b * hidden;
        for (std::int64_t j = 0; j < hidden; ++j) {
            const T r = sigmoid(g[j] + bi[j] + (rec[j] + bh[j]));
            const T z =
                sigmoid(g[hidden + j] + bi[hidden + j] + (rec[hidden + j] + bh[hidden + j]));
            const T hn = rec[2 * hidden + j] + bh[2 * hidden + j];
            const T n = tanh(g[2 * hidden + j] + bi[2 * hidden + j] + r * hn);
            g[j] = r;
            g[hidden + j] = z;
            g[2 * hidden + j] = n;
            kept[j] = hn;
            h[j] = n + z * (prev[j] - n);
        }
    }
}

// dh_t is carried (N, H; the product of later gate gradients with W_hh) + below (N rows of H,
// `below_stride` apart: the gradient at the output h_t) + carry (N, H) when `Carry`, which
// holds dh_{t+1} * z_{t+1} and becomes dh_t * z_t. rec_n (N, H): W_hn h_{t-1} + b_hn.
// grads (N, 4H): the gradients at the pre-activations of n, r, z, then dn_pre * r (the
// recurrent side's n block).
template <typename T, bool Carry>
void gru_backward(const T* __restrict carried, const T* __restrict below,
                  std::int64_t below_stride, T* __restrict carry, const T* __restrict gates,
                  const T* __restrict rec_n, const T* __restrict previous,
                  T* __restrict grads, std::int64_t batch, std::int64_t hidden) {
    for (std::int64_t b = 0; b < batch; ++b) {
        const T* __restrict dh = carried + b * hidden;
        const T* __restrict out_grad = below + b * below_stride;
        T* __restrict c = carry + b * hidden;
        const T* __restrict g = gates + b * 3 * hidden;
        const T* __restrict hn = rec_n + b * hidden;
        const T* __restrict prev = previous + b * hidden;
        T* __restrict out = grads + b * 4 * hidden;
        for (std::int64_t j = 0; j < hidden; ++j) {
            const T d = Carry ? dh[j] + out_grad[j] + c[j] : dh[j] + out_grad[j];
            const T r = g[j], z = g[hidden + j], n = g[2 * hidden + j];
            const T grad_n = d * (T(1) - z) * (T(1) - n * n);
            out[j] = grad_n;
            out[hidden + j] = grad_n * hn[j] * r * (T(1) - r);
            out[2 * hidden + j] = d * (prev[j] - n) * z * (T(1) - z);
            out[3 * hidden + j] = grad_n * r;
            c[j] = d * z;
        }
    }
}

// gates (N, 4H): W_ih x_t + W_hh h_{t-1} in torch's order (i, f, g, o), to which bias (4H,
// the sum of both biases) is added here; overwritten with the gates.
// c_prev, cell, squashed, state (N, H): c_{t-1}, c_t, tanh(c_t), h_t.
template <typename T>
void lstm_forward(T* __restrict gates, const T* __restrict bias, const T* __restrict c_prev,
                  T* __restrict cell,
                  T* __restrict squashed, T* __restrict state, std::int64_t batch,
                  std::int64_t hidden) {
    for (std::int64_t b = 0; b < batch; ++b) {
        T* __restrict g = gates + b * 4 * hidden;
        const T* __restrict cp = c_prev + b * hidden;
        T* __restrict c = cell + b * hidden;
        T* __restrict s = squashed + b * hidden;
        T* __restrict h = state + b * hidden;
        for (std::int64_t j = 0; j < hidden; ++j) {
            const T i = sigmoid(g[j] + bias[j]);
            const T f = sigmoid(g[hidden + j] + bias[hidden + j]);
            const T u = tanh(g[2 * hidden + j] + bias[2 * hidden + j]);
            const T o = sigmoid(g[3 * hidden + j] + bias[3 * hidden + j]);
            g[j] = i;
            g[hidden + j] = f;
            g[2 * hidden + j] = u;
            g[3 * hidden + j] = o;
            const T ct = f * cp[j] + i * u;
            const T st = tanh(ct);
            c[j] = ct;
            s[j] = st;
            h[j] = o * st;
        }
    }
}

// dh_t is carried (N, H; the product of later gate gradients with W_hh) + below (N rows of H,
// `below_stride` apart: the gradient at the output h_t). cell_grad (N, H): dc_t from later
// steps, becomes dc_{t-1}. grads (N, 4H): the gradients at the pre-activations of i, f, g, o.
template <typename T>
void lstm_backward(const T* __restrict carried, const T* __restrict below,
                   std::int64_t below_stride, T* __restrict cell_grad,
                   const T* __restrict gates, const T* __restrict squashed,
                   const T* __restrict c_prev, T* __restrict grads, std::int64_t batch,
                   std::int64_t hidden) {
    for (std::int64_t b = 0; b < batch; ++b) {
        const T* __restrict dh = carried + b * hidden;
        const T* __restrict out_grad = below + b * below_stride;
        T* __restrict dc = cell_grad + b * hidden;
        const T* __restrict g = gates + b * 4 * hidden;
        const T* __restrict s = squashed + b * hidden;
        const T* __restrict cp = c_prev + b * hidden;
        T* __restrict out = grads + b * 4 * hidden;
        for (std::int64_t j = 0; j < hidden; ++j) {
            const T d = dh[j] + out_grad[j];
            const T i = g[j], f = g[hidden + j], u = g[2 * hidden + j], o = g[3 * hidden + j];
            const T st = s[j];
            const T grad_c = d * o * (T(1) - st * st) + dc[j];
            out[j] = grad_c * u * i * (T(1) - i);
            out[hidden + j] = grad_c * cp[j] * f * (T(1) - f);
            out[2 * hidden + j] = grad_c * i * (T(1) - u * u);
            out[3 * hidden + j] = d * st * o * (T(1) - o);
            dc[j] = grad_c * f;
        }
    }
}

template <typename T>
using Gemm = void (*)(const char*, const char*, const int*, const int*, const int*, const T*,
                      const T*, const int*, const T*, const int*, const T*, T*, const int*);

// The Fortran BLAS gemm (sgemm_ or dgemm_, 32-bit integers): column-major.
// mm: C (rows x cols, row-major, row stride ldc) = beta C + A (rows x inner, row stride lda) W',
// where W' is W^T for a row-major W of (cols x inner) when `transposed`, else W (inner x cols).
// W's rows are `ldw` apart where given (W is then a block of a wider matrix), else packed.
template <typename T>
inline void mm(Gemm<T> gemm, const T* a, std::int64_t lda, const T* w, bool transposed,
               T* c, std::int64_t ldc, std::int64_t rows, std::int64_t inner, std::int64_t cols,
               T beta, std::int64_t ldw = 0) {
    const char ta = transposed ? 'T' : 'N', tb = 'N';
    const int m = int(cols), n = int(rows), k = int(inner);
    const int lw = ldw ? int(ldw) : transposed ? int(inner) : int(cols);
    const int la = int(lda), lc = int(ldc);
    const T one = T(1);
    gemm(&ta, &tb, &m, &n, &k, &one, w, &lw, a, &la, &beta, c, &lc);
}

// Runs body(b0, rows) on `threads` threads of one OpenMP region (one thread without OpenMP),
// each with its share of the batch, rows b0 .. b0 + rows - 1; a thread with no rows skips it.
template <typename Body>
void split_rows(std::int64_t batch, int threads, Body body) {
    (void)threads;  // unused where OpenMP is not available
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const std::int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
#else
        const std::int64_t id = 0, n = 1;
#endif
        const std::int64_t b0 = batch * id / n, rows = batch * (id + 1) / n - b0;
        if (rows > 0) body(b0, rows);
    }
}

template <typename T>
void gru_forward_seq(Gemm<T> gemm, T* gates, const T* w_hh, const T* b_ih, const T* b_hh,
                     const T* start, T* states, T* rec_n, T* product, std::int64_t steps,
                     std::int64_t batch, std::int64_t hidden, int reverse, int zero_start,
                     int threads) {
    split_rows(batch, threads, [&](std::int64_t b0, std::int64_t rows) {
        const std::int64_t H = hidden, N = batch;
        const T* prev = start + b0 * H;
        for (std::int64_t s = 0; s < steps; ++s) {
            const std::int64_t t = reverse ? steps - 1 - s : s;
            T* p = product + b0 * 3 * H;
            if (s == 0 && zero_start) {  // W_hh h_0 is zero: no product to form
                std::memset(p, 0, sizeof(T) * rows * 3 * H);
            } else {
                mm<T>(gemm, prev, H, w_hh, true, p, 3 * H, rows, H, 3 * H, T(0));
            }
            T* h = states + (t * N + b0) * H;
            gru_forward<T>(gates + (t * N + b0) * 3 * H, p, b_ih, b_hh, prev, h,
                           rec_n + (t * N + b0) * H, rows, H);
            prev = h;
        }
    });
}

template <typename T>
void gru_backward_seq(Gemm<T> gemm, T* carried, const T* below, std::int64_t below_step,
                      std::int64_t below_stride, T* carry, const T* gates, const T* rec_n,
                      const T* states, const T* start, T* grads, const T* w_hh,
                      std::int64_t steps, std::int64_t batch, std::int64_t hidden, int reverse,
                      int threads) {
    split_rows(batch, threads, [&](std::int64_t b0, std::int64_t rows) {
        const std::int64_t H = hidden, N = batch;
        for (std::int64_t pos = steps - 1; pos >= 0; --pos) {
            const std::int64_t t = reverse ? steps - 1 - pos : pos;
            const std::int64_t tb = reverse ? steps - pos : pos - 1;  // the step before t
            const T* before = pos ? states + (tb * N + b0) * H : start + b0 * H;
            T* g = grads + (t * N + b0) * 4 * H;
            const T* out_grad = below + t * below_step + b0 * below_stride;
            if (pos < steps - 1) {
                gru_backward<T, true>(carried + b0 * H, out_grad, below_stride, carry + b0 * H,
                                      gates + (t * N + b0) * 3 * H, rec_n + (t * N + b0) * H,
                                      before, g, rows, H);
            } else {
                gru_backward<T, false>(carried + b0 * H, out_grad, below_stride, carry + b0 * H,
                                       gates + (t * N + b0) * 3 * H, rec_n + (t * N + b0) * H,
                                       before, g, rows, H);
            }
            if (pos) mm<T>(gemm, g + H, 4 * H, w_hh, false, carried + b0 * H, H, rows, 3 * H, H, T(0));
        }
    });
}

// joined (L, N, H + H_in): step t's row holds [h_{t-1}, x_t], so that one product per step,
// with weight (4H, H + H_in) = [W_hh, W_ih] (torch's gate order), forms both gate terms
// (and the backward pass forms both weights' gradients with one product over all steps). The
// caller fills x_t and the first step's h_0 (zeros where none is given); each step copies its
// h_t into the next step's row.
template <typename T>
void lstm_forward_seq(Gemm<T> gemm, T* gates, T* joined, const T* weight, const T* bias,
                      const T* c_start, T* cells, T* squashed, T* states, std::int64_t inputs,
                      std::int64_t steps, std::int64_t batch, std::int64_t hidden, int reverse,
                      int zero_start, int threads) {
    split_rows(batch, threads, [&](std::int64_t b0, std::int64_t rows) {
        const std::int64_t H = hidden, N = batch, K = hidden + inputs;
        const T* c = c_start + b0 * H;
        for (std::int64_t s = 0; s < steps; ++s) {
            const std::int64_t t = reverse ? steps - 1 - s : s;
            const T* a = joined + (t * N + b0) * K;
            T* g = gates + (t * N + b0) * 4 * H;
            if (s == 0 && zero_start) {  // W_hh h_0 is zero when h_0 is: W_ih x_0 only
                mm<T>(gemm, a + H, K, weight + H, true, g, 4 * H, rows, inputs, 4 * H, T(0), K);
            } else {
                mm<T>(gemm, a, K, weight, true, g, 4 * H, rows, K, 4 * H, T(0));
            }
            const std::int64_t at = (t * N + b0) * H;
            lstm_forward<T>(g, bias, c, cells + at, squashed + at, states + at, rows, H);
            if (s + 1 < steps) {
                T* next = joined + ((reverse ? t - 1 : t + 1) * N + b0) * K;
                for (std::int64_t b = 0; b < rows; ++b) {
                    std::memcpy(next + b * K, states + at + b * H, sizeof(T) * H);
                }
            }
            c = cells + at;
        }
    });
}

template <typename T>
void lstm_backward_seq(Gemm<T> gemm, T* carried, const T* below, std::int64_t below_step,
                       std::int64_t below_stride, T* cell_grad, const T* gates,
                       const T* squashed, const T* cells, const T* c_start, T* grads,
                       const T* w_hh, std::int64_t steps, std::int64_t batch,
                       std::int64_t hidden, int reverse, int threads) {
    split_rows(batch, threads, [&](std::int64_t b0, std::int64_t rows) {
        const std::int64_t H = hidden, N = batch;
        for (std::int64_t pos = steps - 1; pos >= 0; --pos) {
            const std::int64_t t = reverse ? steps - 1 - pos : pos;
            const std::int64_t tb = reverse ? steps - pos : pos - 1;
            const T* before = pos ? cells + (tb * N + b0) * H : c_start + b0 * H;
            T* g = grads + (t * N + b0) * 4 * H;
            lstm_backward<T>(carried + b0 * H, below + t * below_step + b0 * below_stride,
                             below_stride, cell_grad + b0 * H, gates + (t * N + b0) * 4 * H,
                             squashed + (t * N + b0) * H, before, g, rows, H);
            if (pos) mm<T>(gemm, g, 4 * H, w_hh, false, carried + b0 * H, H, rows, 4 * H, H, T(0));
        }
    });
}

}  // namespace

#define RNNKIT_FUSED_EXPORT extern "C" __attribute__((visibility("default")))

#define RNNKIT_FUSED_DEFINE(suffix, T)                                                       \
    RNNKIT_FUSED_EXPORT void rnnkit_gru_forward_##suffix(                                    \
        T* gates, const T* recurrent, const T* bias_ih, const T* bias_hh, const T* previous, \
        T* state, T* rec_n, std::int64_t batch, std::int64_t hidden) {                       \
        gru_forward<T>(gates, recurrent, bias_ih, bias_hh, previous, state, rec_n, batch,    \
                       hidden);                                                              \
    }                                                                                        \
    RNNKIT_FUSED_EXPORT void rnnkit_gru_backward_##suffix(                                   \
        const T* carried, const T* below, std::int64_t below_stride, T* carry,               \
        std::int32_t has_carry, const T* gates, const T* rec_n, const T* previous, T* grads, \
        std::int64_t batch, std::int64_t hidden) {                                           \
        if (has_carry) {                                                                     \
            gru_backward<T, true>(carried, below, below_stride, carry, gates, rec_n,         \
                                  previous, grads, batch, hidden);                           \
        } else {                                                                             \
            gru_backward<T, false>(carried, below, below_stride, carry, gates, rec_n,        \
                                   previous, grads, batch, hidden);                          \
        }                                                                                    \
    }                                                                                        \
    RNNKIT_FUSED_EXPORT void rnnkit_lstm_forward_##suffix(                                   \
        T* gates, const T* bias, const T* c_prev, T* cell, T* squashed, T* state,            \
        std::int64_t batch, std::int64_t hidden) {                                           \
        lstm_forward<T>(gates, bias, c_prev, cell, squashed, state, batch, hidden);          \
    }                                                                                        \
    RNNKIT_FUSED_EXPORT void rnnkit_lstm_backward_##suffix(                                  \
        const T* carried, const T* below, std::int64_t below_stride, T* cell_grad,           \
        const T* gates, const T* squashed, const T* c_prev, T* grads, std::int64_t batch,    \
        std::int64_t hidden) {                                                               \
        lstm_backward<T>(carried, below, below_stride, cell_grad, gates, squashed, c_prev,   \
                         grads, batch, hidden);                                              \
    }

RNNKIT_FUSED_DEFINE(f32, float)
RNNKIT_FUSED_DEFINE(f64, double)

#define RNNKIT_SEQ_DEFINE(suffix, T)                                                         \
    RNNKIT_FUSED_EXPORT void rnnkit_gru_forward_seq_##suffix(                                \
        void* gemm, T* gates, const T* w_hh, const T* b_ih, const T* b_hh, const T* start,   \
        T* states, T* rec_n, T* product, std::int64_t steps, std::int64_t batch,             \
        std::int64_t hidden, std::int32_t reverse, std::int32_t zero_start,                  \
        std::int32_t threads) {                                                              \
        gru_forward_seq<T>(reinterpret_cast<Gemm<T>>(gemm), gates, w_hh, b_ih, b_hh, start,  \
                           states, rec_n, product, steps, batch, hidden, reverse,            \
                           zero_start, threads);                                             \
    }                                                                                        \
    RNNKIT_FUSED_EXPORT void rnnkit_gru_backward_seq_##suffix(                               \
        void* gemm, T* carried, const T* below, std::int64_t below_step,                     \
        std::int64_t below_stride, T* carry, const T* gates, const T* rec_n,                 \
        const T* states, const T* start, T* grads, const T* w_hh, std::int64_t steps,        \
        std::int64_t batch, std::int64_t hidden, std::int32_t reverse,                       \
        std::int32_t threads) {                                                              \
        gru_backward_seq<T>(reinterpret_cast<Gemm<T>>(gemm), carried, below, below_step,     \
                            below_stride, carry, gates, rec_n, states, start, grads, w_hh,   \
                            steps, batch, hidden, reverse, threads);                         \
    }                                                                                        \
    RNNKIT_FUSED_EXPORT void rnnkit_lstm_forward_seq_##suffix(                               \
        void* gemm, T* gates, T* joined, const T* weight, const T* bias, const T* c_start,   \
        T* cells, T* squashed, T* states, std::int64_t inputs, std::int64_t steps,           \
        std::int64_t batch, std::int64_t hidden, std::int32_t reverse,                       \
        std::int32_t zero_start, std::int32_t threads) {                                     \
        lstm_forward_seq<T>(reinterpret_cast<Gemm<T>>(gemm), gates, joined, weight, bias,    \
                            c_start, cells, squashed, states, inputs, steps, batch, hidden,  \
                            reverse, zero_start, threads);                                   \
    }                                                                                        \
    RNNKIT_FUSED_EXPORT void rnnkit_lstm_backward_seq_##suffix(                              \
        void* gemm, T* carried, const T* below, std::int64_t below_step,                     \
        std::int64_t below_stride, T* cell_grad, const T* gates, const T* squashed,          \
        const T* cells, const T* c_start, T* grads, const T* w_hh, std::int64_t steps,       \
        std::int64_t batch, std::int64_t hidden, std::int32_t reverse,                       \
        std::int32_t threads) {                                                              \
        lstm_backward_seq<T>(reinterpret_cast<Gemm<T>>(gemm), carried, below, below_step,    \
                             below_stride, cell_grad, gates, squashed, cells, c_start,       \
                             grads, w_hh, steps, batch, hidden, reverse, threads);           \
    }

RNNKIT_SEQ_DEFINE(f32, float)
RNNKIT_SEQ_DEFINE(f64, double)
