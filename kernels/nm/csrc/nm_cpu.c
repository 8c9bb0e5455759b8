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

#include "nm_common.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* column of compacted position k: (k / n) * m + off[k]; shifts when n and m are powers of two */
#define COL(k) (pow2 ? ((((k) >> sn) << sm) + orow[k]) : (((k) / n) * m + orow[k]))


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

#if defined(__AVX512F__)
/* v == 1, batch 1, n:m = m/2:m with m | 32 (1:2, 2:4, 4:8, 8:16, 16:32): 16 kept values always come
 * from one window of 32 consecutive x, so a single two-register permute (vpermt2ps) does the gather:
 * lane l reads x[window + (l / n) * m + off]. Tail positions (kp % 16) take the scalar loop. */
static float row_half_avx512(const float *restrict vr, const uint8_t *restrict orow,
                             const float *restrict x, int64_t kp, int64_t n, int64_t m) {
    int32_t base_arr[16];
    for (int l = 0; l < 16; ++l) base_arr[l] = (int32_t)((l / n) * m);
    const __m512i base = _mm512_loadu_si512((const void *)base_arr);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    int64_t k = 0;
#define HALF_STEP(ACC, K)                                                                          \
    do {                                                                                           \
        const __m512i ix = _mm512_add_epi32(                                                       \
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(orow + (K)))), base);          \
        const __m512 xs = _mm512_permutex2var_ps(_mm512_loadu_ps(x + 2 * (K)), ix,                \
                                                 _mm512_loadu_ps(x + 2 * (K) + 16));              \
        ACC = _mm512_fmadd_ps(_mm512_loadu_ps(vr + (K)), xs, ACC);                                 \
    } while (0)
    for (; k + 64 <= kp; k += 64) {  /* 16 kept values span 32 inputs */
        HALF_STEP(acc0, k);
        HALF_STEP(acc1, k + 16);
        HALF_STEP(acc2, k + 32);
        HALF_STEP(acc3, k + 48);
    }
    for (; k + 16 <= kp; k += 16) HALF_STEP(acc0, k);
#undef HALF_STEP
    acc0 = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
    float acc = _mm512_reduce_add_ps(acc0);
    for (; k < kp; ++k) acc += vr[k] * x[(k / n) * m + orow[k]];
    return acc;
}
#endif

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
#if defined(__AVX512F__)
                if (2 * n == m && 32 % m == 0) {
                    acc = row_half_avx512(vr, orow, xb, kp, n, m);
                } else
#endif
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
    const nm_geom geo = nm_geometry(n, m);
    if (bp % 16) return 3;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t o = 0; o < out; ++o)
        nm_row_kmajor(&geo, vals + o * kp, off + o * kp, kp, xt, bp, batch, y, out, o);
    return 0;
}

#if defined(__AVX512F__)
/* As row_half_avx512 for 1:2 and 2:4 (bits = log2 m = 1 or 2), but reading the bit-packed in-group
 * offsets of the storage format directly (bits per kept value instead of a byte): 16 offsets are one
 * 16- or 32-bit word, decoded with a per-lane variable shift. Rows start on a byte boundary
 * because kp * bits % 8 == 0 (checked by the caller). */
int nm_spmm_half_packed_f32(const float *restrict x, const float *restrict vals,
                            const uint8_t *restrict packed, float *restrict y, int64_t out,
                            int64_t in, int64_t n, int64_t m, int nthreads) {
    const int64_t kp = in / m * n, bits = (m == 2) ? 1 : 2;
    if (!((m == 2 && n == 1) || (m == 4 && n == 2)) || (kp * bits) % 8) return 4;
    int32_t base_arr[16], shift_arr[16];
    for (int l = 0; l < 16; ++l) {
        base_arr[l] = (int32_t)((l / n) * m);
        shift_arr[l] = (int32_t)(l * bits);
    }
    const __m512i base = _mm512_loadu_si512((const void *)base_arr);
    const __m512i shifts = _mm512_loadu_si512((const void *)shift_arr);
    const __m512i mask = _mm512_set1_epi32((int32_t)(m - 1));
    /* rows in tiles of R = 4 share each 32-input window of x (loaded once per tile, not per row) */
    const int64_t tiles = (out + 3) / 4;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t o0 = t * 4, rows = (o0 + 4 <= out) ? 4 : out - o0;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        int64_t k = 0;
        for (; k + 16 <= kp; k += 16) {
            const __m512 lo = _mm512_loadu_ps(x + 2 * k), hi = _mm512_loadu_ps(x + 2 * k + 16);
            for (int64_t r = 0; r < rows; ++r) {
                const uint8_t *restrict prow = packed + (o0 + r) * kp * bits / 8;
                const uint32_t word = bits == 2 ? *(const uint32_t *)(const void *)(prow + k / 4)
                                                : *(const uint16_t *)(const void *)(prow + k / 8);
                const __m512i ix = _mm512_add_epi32(
                    _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int32_t)word), shifts), mask), base);
                acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(vals + (o0 + r) * kp + k),
                                         _mm512_permutex2var_ps(lo, ix, hi), acc[r]);
            }
        }
        for (int64_t r = 0; r < rows; ++r) {
            const float *restrict vr = vals + (o0 + r) * kp;
            const uint8_t *restrict prow = packed + (o0 + r) * kp * bits / 8;
            float a = _mm512_reduce_add_ps(acc[r]);
            for (int64_t kk = k; kk < kp; ++kk) {
                const int64_t bit = kk * bits;
                const int64_t off = (prow[bit / 8] >> (bit % 8)) & (m - 1);
                a += vr[kk] * x[(kk / n) * m + off];
            }
            y[o0 + r] = a;
        }
    }
    return 0;
}
#else
int nm_spmm_half_packed_f32(const float *x, const float *vals, const uint8_t *packed, float *y,
                            int64_t out, int64_t in, int64_t n, int64_t m, int nthreads) {
    (void)x; (void)vals; (void)packed; (void)y; (void)out; (void)in; (void)n; (void)m; (void)nthreads;
    return 5;  /* not built with AVX-512 */
}
#endif
