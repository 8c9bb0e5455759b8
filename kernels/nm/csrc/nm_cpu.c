/* N:M sparse x dense for small batches on CPU (fp32), called through ctypes by kernels/nm/native.py.
 *
 * y[b, o] = sum_{g < in/m} sum_{j < n} values[o, g*n + j] * x[b, g*m + off[blk(o), g*n + j]]
 * with blk(o) = o / v (vector-wise N:M, NM-SpMM arXiv 2503.01253; v = 1 is per-row N:M).
 *
 * Layouts: xt (in, B) K-major activations; values (out, Kp) with Kp = in*n/m; off (n_vec, Kp) uint8
 * in-group offsets; y (out, B). Weight traffic per kept value: 4 B (value) + 1 B / v (offset).
 *
 * v >= 2: the block's kept rows of xt are gathered once into a thread-local buffer (Kp*B floats,
 * L1/L2-resident), then each of the v rows is a dense dot product against it (streams values).
 * v == 1: gather fused into the dot product (no reuse to amortise a buffer).
 */
#include <stdint.h>
#include <stdlib.h>

static void block_rows(const float *restrict vals, const float *restrict buf, float *restrict y,
                       int64_t rows, int64_t kp, int64_t batch) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *restrict vr = vals + r * kp;
        if (batch == 1) {
            float acc = 0.f;
#pragma omp simd reduction(+ : acc)
            for (int64_t k = 0; k < kp; ++k) acc += vr[k] * buf[k];
            y[r] = acc;
        } else {
            float acc[64];
            for (int64_t b = 0; b < batch; ++b) acc[b] = 0.f;
            for (int64_t k = 0; k < kp; ++k) {
                const float a = vr[k];
                const float *restrict xb = buf + k * batch;
#pragma omp simd
                for (int64_t b = 0; b < batch; ++b) acc[b] += a * xb[b];
            }
            for (int64_t b = 0; b < batch; ++b) y[r * batch + b] = acc[b];
        }
    }
}

/* one output row of per-row (v = 1) N:M at batch 1; with power-of-two n and m the column is
 * ((k >> log2 n) << log2 m) + offset, which the compiler turns into vector gathers */
static float dot_gather_pow2(const float *restrict vr, const uint8_t *restrict orow,
                             const float *restrict x, int64_t kp, int sn, int sm) {
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < kp; ++k) acc += vr[k] * x[((k >> sn) << sm) + orow[k]];
    return acc;
}

static int log2_exact(int64_t a) {
    int s = 0;
    while ((INT64_C(1) << s) < a) ++s;
    return (INT64_C(1) << s) == a ? s : -1;
}

/* returns 0 on success, 1 if batch > 64, 2 if out of memory */
int nm_spmm_f32(const float *restrict xt, const float *restrict vals, const uint8_t *restrict off,
                float *restrict y, int64_t out, int64_t in, int64_t n, int64_t m, int64_t v,
                int64_t batch, int nthreads) {
    if (batch > 64) return 1;
    const int64_t groups = in / m, kp = groups * n, n_vec = (out + v - 1) / v;
    int status = 0;
    if (v == 1) {
        const int sn = log2_exact(n), sm = log2_exact(m);
#pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int64_t o = 0; o < out; ++o) {
            const float *restrict vr = vals + o * kp;
            const uint8_t *restrict orow = off + o * kp;
            float acc[64];
            for (int64_t b = 0; b < batch; ++b) acc[b] = 0.f;
            if (batch == 1 && sn >= 0 && sm >= 0) {
                acc[0] = dot_gather_pow2(vr, orow, xt, kp, sn, sm);
            } else if (batch == 1) {
                float a = 0.f;
                for (int64_t g = 0; g < groups; ++g)
                    for (int64_t j = 0; j < n; ++j)
                        a += vr[g * n + j] * xt[g * m + orow[g * n + j]];
                acc[0] = a;
            } else {
                for (int64_t g = 0; g < groups; ++g)
                    for (int64_t j = 0; j < n; ++j) {
                        const float a = vr[g * n + j];
                        const float *restrict xb = xt + (g * m + orow[g * n + j]) * batch;
#pragma omp simd
                        for (int64_t b = 0; b < batch; ++b) acc[b] += a * xb[b];
                    }
            }
            for (int64_t b = 0; b < batch; ++b) y[o * batch + b] = acc[b];
        }
        return 0;
    }
#pragma omp parallel num_threads(nthreads)
    {
        float *buf = (float *)malloc(sizeof(float) * (size_t)(kp * batch));
        if (!buf) {
#pragma omp atomic write
            status = 2;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_vec; ++blk) {
            if (!buf) continue;
            const uint8_t *restrict orow = off + blk * kp;
            for (int64_t g = 0; g < groups; ++g)
                for (int64_t j = 0; j < n; ++j) {
                    const float *restrict src = xt + (g * m + orow[g * n + j]) * batch;
                    float *restrict dst = buf + (g * n + j) * batch;
                    for (int64_t b = 0; b < batch; ++b) dst[b] = src[b];
                }
            const int64_t r0 = blk * v, rows = (r0 + v <= out) ? v : out - r0;
            block_rows(vals + r0 * kp, buf, y + r0 * batch, rows, kp, batch);
        }
        free(buf);
    }
    return status;
}
