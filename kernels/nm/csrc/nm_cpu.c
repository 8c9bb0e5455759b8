/* N:M sparse x dense for small batches on CPU (fp32), called through ctypes by kernels/nm/native.py.
 *
 * y[b, o] = sum_{g < in/m} sum_{j < n} values[o, g*n + j] * x[b, g*m + off[blk(o), g*n + j]]
 * with blk(o) = o / v (vector-wise N:M, NM-SpMM arXiv 2503.01253; v = 1 is per-row N:M).
 *
 * Layouts (all row-major): x (B, in); values (out, Kp) with Kp = in*n/m; off (n_vec, Kp) uint8
 * in-group offsets; y (B, out). Weight traffic per kept value: 4 B (value) + 1 B / v (offset).
 *
 * v >= 2: the block's kept columns of x are gathered once into a thread-local buffer (B x Kp
 * floats, L1/L2-resident); then a 4-row x 4-batch register tile of dot products streams the
 * values once. v == 1: nothing to amortise, so the gather is fused into each row's dot product
 * (batch 1, vector gathers) or, for batch > 1, x is passed K-major and each kept value does one
 * 16-wide broadcast FMA against its column (nm_spmm_rows_kmajor_f32).
 */
#include <stdint.h>
#include <stdlib.h>

/* column of compacted position k: (k / n) * m + off[k]; shifts when n and m are powers of two */
#define COL(k) (pow2 ? ((((k) >> sn) << sm) + orow[k]) : (((k) / n) * m + orow[k]))

static int log2_exact(int64_t a) {
    int s = 0;
    while ((INT64_C(1) << s) < a) ++s;
    return (INT64_C(1) << s) == a ? s : -1;
}

static float dot(const float *restrict a, const float *restrict b, int64_t len) {
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < len; ++k) acc += a[k] * b[k];
    return acc;
}

/* y[b, r] for r < rows, b < batch: dots of value rows (rows x kp, stride kp) against buf (batch x kp) */
static void block_dots(const float *restrict vals, const float *restrict buf, float *restrict y,
                       int64_t rows, int64_t kp, int64_t batch, int64_t y_stride) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *restrict v0 = vals + r * kp, *restrict v1 = v0 + kp, *restrict v2 = v1 + kp,
                    *restrict v3 = v2 + kp;
        int64_t b = 0;
        for (; b + 4 <= batch; b += 4) {
            const float *restrict x0 = buf + b * kp, *restrict x1 = x0 + kp, *restrict x2 = x1 + kp,
                        *restrict x3 = x2 + kp;
            float a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
            float a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
#pragma omp simd reduction(+ : a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33)
            for (int64_t k = 0; k < kp; ++k) {
                const float w0 = v0[k], w1 = v1[k], w2 = v2[k], w3 = v3[k];
                const float c0 = x0[k], c1 = x1[k], c2 = x2[k], c3 = x3[k];
                a00 += w0 * c0; a01 += w0 * c1; a02 += w0 * c2; a03 += w0 * c3;
                a10 += w1 * c0; a11 += w1 * c1; a12 += w1 * c2; a13 += w1 * c3;
                a20 += w2 * c0; a21 += w2 * c1; a22 += w2 * c2; a23 += w2 * c3;
                a30 += w3 * c0; a31 += w3 * c1; a32 += w3 * c2; a33 += w3 * c3;
            }
            float *restrict yb = y + b * y_stride + r;
            yb[0] = a00; yb[1] = a10; yb[2] = a20; yb[3] = a30; yb += y_stride;
            yb[0] = a01; yb[1] = a11; yb[2] = a21; yb[3] = a31; yb += y_stride;
            yb[0] = a02; yb[1] = a12; yb[2] = a22; yb[3] = a32; yb += y_stride;
            yb[0] = a03; yb[1] = a13; yb[2] = a23; yb[3] = a33;
        }
        for (; b < batch; ++b) {
            const float *restrict xb = buf + b * kp;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
            for (int64_t k = 0; k < kp; ++k) {
                const float c = xb[k];
                a0 += v0[k] * c; a1 += v1[k] * c; a2 += v2[k] * c; a3 += v3[k] * c;
            }
            float *restrict yb = y + b * y_stride + r;
            yb[0] = a0; yb[1] = a1; yb[2] = a2; yb[3] = a3;
        }
    }
    for (; r < rows; ++r)
        for (int64_t b = 0; b < batch; ++b) y[b * y_stride + r] = dot(vals + r * kp, buf + b * kp, kp);
}

/* returns 0 on success, 2 if a thread-local buffer could not be allocated */
int nm_spmm_f32(const float *restrict x, const float *restrict vals, const uint8_t *restrict off,
                float *restrict y, int64_t out, int64_t in, int64_t n, int64_t m, int64_t v,
                int64_t batch, int nthreads) {
    const int64_t groups = in / m, kp = groups * n, n_vec = (out + v - 1) / v;
    const int sn = log2_exact(n), sm = log2_exact(m), pow2 = sn >= 0 && sm >= 0;
    int status = 0;
    if (v == 1) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int64_t o = 0; o < out; ++o) {
            const float *restrict vr = vals + o * kp;
            const uint8_t *restrict orow = off + o * kp;
            for (int64_t b = 0; b < batch; ++b) {
                const float *restrict xb = x + b * in;
                float acc = 0.f;
                if (pow2) {  /* gcc turns this into vector gathers */
#pragma omp simd reduction(+ : acc)
                    for (int64_t k = 0; k < kp; ++k) acc += vr[k] * xb[((k >> sn) << sm) + orow[k]];
                } else {
                    for (int64_t g = 0; g < groups; ++g)
                        for (int64_t j = 0; j < n; ++j) acc += vr[g * n + j] * xb[g * m + orow[g * n + j]];
                }
                y[b * out + o] = acc;
            }
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
            for (int64_t b = 0; b < batch; ++b) {  /* gather: buf[b, k] = x[b, col(k)] */
                const float *restrict xb = x + b * in;
                float *restrict dst = buf + b * kp;
                for (int64_t k = 0; k < kp; ++k) dst[k] = xb[COL(k)];
            }
            const int64_t r0 = blk * v, rows = (r0 + v <= out) ? v : out - r0;
            block_dots(vals + r0 * kp, buf, y + r0, rows, kp, batch, out);
        }
        free(buf);
    }
    return status;
}

/* v == 1 with batch > 1: xt is K-major (in, bp) with bp a multiple of 16 (zero padded), so each kept
 * value meets 16 contiguous batch entries of its column: one broadcast FMA into a 16-wide register
 * accumulator per kept value and batch chunk. */
int nm_spmm_rows_kmajor_f32(const float *restrict xt, const float *restrict vals,
                            const uint8_t *restrict off, float *restrict y, int64_t out, int64_t in,
                            int64_t n, int64_t m, int64_t bp, int64_t batch, int nthreads) {
    const int64_t kp = in / m * n;
    if (bp % 16) return 3;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t o = 0; o < out; ++o) {
        const float *restrict vr = vals + o * kp;
        const uint8_t *restrict orow = off + o * kp;
        for (int64_t b0 = 0; b0 < batch; b0 += 16) {
            float acc[16] = {0};
            for (int64_t g = 0; g < kp / n; ++g) {
                const float *restrict xg = xt + g * m * bp + b0;
                for (int64_t j = 0; j < n; ++j) {
                    const float a = vr[g * n + j];
                    const float *restrict xb = xg + (int64_t)orow[g * n + j] * bp;
#pragma omp simd
                    for (int b = 0; b < 16; ++b) acc[b] += a * xb[b];
                }
            }
            for (int64_t b = b0; b < batch && b < b0 + 16; ++b) y[b * out + o] = acc[b - b0];
        }
    }
    return 0;
}
