/* Weight-only int4/int8 (optionally N:M sparse) x fp32 dense on CPU, called through ctypes by
 * kernels/quant/native.py. Format: kernels/quant/format.py.
 *
 * y[b, o] = sum_k x[b, k] * s[o, k / g] * (u[o, k] - z[o, k / g])
 *
 * u: unsigned codes, int8 one per byte, int4 two per byte (code 2j low nibble, 2j+1 high nibble);
 * s: fp16 or fp32 scales (out, in / g); z: uint8 zero points (out, in / g), or the constant
 * 2^(bits-1) when zeros == NULL (symmetric, offset-binary codes).
 *
 * Plan (AVX-512; scalar fallbacks keep other machines correct):
 * - batch 1 (g % 16 == 0, int4: g % 32 == 0): gemv_fused_r, dequantization fused into the FMAs
 *   (int4: a 16-entry table lookup of u - z per nibble), 4 rows per x load, one scale FMA per group.
 * - otherwise: rows in tiles of 4; for each k-block of KB codes the tile is dequantized once into an
 *   L1 buffer (exactly the reference's s * (u - z)), then a 4-row x 4-batch register tile of 16-wide
 *   FMAs streams the buffer against x. Accumulators live in a thread-local array of vectors across
 *   k-blocks and are reduced once per tile.
 * - int4 with g % 32 == 0 reads x reordered per 32 columns (even, then odd: deinterleave32), the
 *   order in which 16 bytes of codes unpack with no interleave.
 *
 * N:M + quant (nmq_gemm_f32): the kept values are a quantized (out, kp) matrix; per vector block the
 * kept columns of x are first gathered into a thread-local (batch, kp) buffer (1:2 / 2:4, any v,
 * read the 2-bit packed indices with a vpermt2ps window gather, as kernels/nm/csrc/nm_cpu.c does),
 * then the block's rows run the routines above against the gathered x. v = 1 with batch > 1:
 * nmq_rows_kmajor_f32 (one FMA per kept value against a K-major x).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nm_common.h"
#if defined(__AVX512F__) || defined(__F16C__) /* F16C alone: _cvtsh_ss on AVX2-only CPUs */
#include <immintrin.h>
#endif

#define KB 1024     /* codes per k-block: 4 rows x 1024 fp32 = 16 KiB of dequantized weights */
#define BS (KB + 16) /* buffer row stride: rows 4 KiB apart would alias in L1 */
#ifndef PF
#define PF 512     /* software prefetch distance along a row of codes, bytes: 512 measured 10-15 % faster than 1024 for int4 g32 at batch 1 (cold, Xeon EMR); int8 indifferent */
#endif
#define MAXB 64     /* batch limit (checked by the caller) */

static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man) { /* subnormal half: normalise */
        int e = -1;
        uint32_t mm = man;
        do { ++e; mm <<= 1; } while (!(mm & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mm & 0x3ffu) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

typedef struct {
    const uint8_t *codes;  /* (rows, in * bits / 8) */
    const void *scales;    /* (rows, in / g), fp16 or fp32 */
    const uint8_t *zeros;  /* (rows, in / g) or NULL */
    int64_t in, g, bits;
    int scale_f16;
} qmat;

static inline float scale_at(const qmat *q, int64_t o, int64_t gi) {
    const int64_t idx = o * (q->in / q->g) + gi;
    return q->scale_f16 ? half_to_float(((const uint16_t *)q->scales)[idx]) : ((const float *)q->scales)[idx];
}

/* dst[k - k0] = s * (u[o, k] - z) for k0 <= k < k1 (k0 even for int4). One division per call; the
 * group's scale and zero change at group boundaries only. deint (int4, g % 32 == 0, k0 % 32 == 0):
 * write each 32-code chunk in deinterleave32 order (x is reordered the same way). */
static void dequant_row(const qmat *q, int64_t o, int64_t k0, int64_t k1, float *restrict dst, int deint) {
    const int64_t row_bytes = q->in * q->bits / 8, ngroups = q->in / q->g;
    const uint8_t *restrict crow = q->codes + o * row_bytes;
    const int32_t zdef = 1 << (q->bits - 1);
    int64_t gi = k0 / q->g, gend = (gi + 1) * q->g, k = k0;
    (void)deint; /* used by the AVX-512 path only */
#if defined(__AVX512F__)
    const __m512i shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i low4 = _mm512_set1_epi32(15);
#endif
    while (k < k1) {
        if (k == gend) { /* next group */
            ++gi;
            gend += q->g;
        }
        const int64_t lim = gend < k1 ? gend : k1;
        const int64_t idx = o * ngroups + gi;
#if defined(__F16C__)
        const float s = q->scale_f16 ? _cvtsh_ss(((const uint16_t *)q->scales)[idx]) : ((const float *)q->scales)[idx];
#else
        const float s = scale_at(q, o, gi);
#endif
        const int32_t z = q->zeros ? q->zeros[idx] : zdef;
#if defined(__AVX512F__)
        const __m512 vs = _mm512_set1_ps(s);
        const __m512i vz = _mm512_set1_epi32(z);
        if (q->bits == 8) {
            for (; k + 16 <= lim; k += 16) {
                const __m512i u = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(crow + k)));
                _mm512_storeu_ps(dst + (k - k0), _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(u, vz)), vs));
            }
        } else if (deint) { /* 16 bytes -> 32 codes in deinterleave32 order, by table lookup */
            const __m512 lut = _mm512_cvtepi32_ps(_mm512_sub_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), vz));
            for (; k + 32 <= lim; k += 32) {
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(crow + k / 2)));
                _mm512_storeu_ps(dst + (k - k0), _mm512_mul_ps(_mm512_permutexvar_ps(v, lut), vs));
                _mm512_storeu_ps(dst + (k - k0) + 16,
                                 _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut), vs));
            }
        } else {
            for (; k + 16 <= lim; k += 16) { /* 8 bytes -> 16 codes in order */
                const __m128i b8 = _mm_loadl_epi64((const __m128i *)(crow + k / 2));
                __m512i u = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b8, b8)); /* byte j in lanes 2j, 2j+1 */
                u = _mm512_and_si512(_mm512_srlv_epi32(u, shifts), low4);
                _mm512_storeu_ps(dst + (k - k0), _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(u, vz)), vs));
            }
        }
#endif
        for (; k < lim; ++k) {
            const int32_t u = q->bits == 8 ? crow[k] : (crow[k >> 1] >> ((k & 1) * 4)) & 15;
            dst[k - k0] = s * (float)(u - z);
        }
    }
}

#if defined(__AVX512F__)
/* The 4-row x 4-batch case spelled out: 16 named accumulators, 4 weight and 4 x registers per step
 * (8 loads per 16 FMAs; the generic version below let gcc re-load the weights for every FMA). */
static void tile_fma_4x4(const float *restrict w, int64_t wstride, const float *restrict x,
                         int64_t xstride, int64_t len, __m512 *restrict acc) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
           a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const float *restrict w0 = w, *restrict w1 = w + wstride, *restrict w2 = w + 2 * wstride,
                *restrict w3 = w + 3 * wstride;
    const float *restrict x0 = x, *restrict x1 = x + xstride, *restrict x2 = x + 2 * xstride,
                *restrict x3 = x + 3 * xstride;
    for (int64_t k = 0; k < len; k += 16) {
        __m512 v0 = _mm512_loadu_ps(w0 + k), v1 = _mm512_loadu_ps(w1 + k),
               v2 = _mm512_loadu_ps(w2 + k), v3 = _mm512_loadu_ps(w3 + k);
        /* NOTE: pins the 4 weight vectors in registers; without it gcc folds a re-load of the
         * weight into each of the 16 FMAs (2 loads per FMA: load-port bound on Zen 4); the same
         * for each x vector below (else re-loaded for each of the 4 rows) */
        __asm__("" : "+v"(v0), "+v"(v1), "+v"(v2), "+v"(v3));
        __m512 c = _mm512_loadu_ps(x0 + k);
        __asm__("" : "+v"(c));
        a00 = _mm512_fmadd_ps(v0, c, a00); a10 = _mm512_fmadd_ps(v1, c, a10);
        a20 = _mm512_fmadd_ps(v2, c, a20); a30 = _mm512_fmadd_ps(v3, c, a30);
        c = _mm512_loadu_ps(x1 + k);
        __asm__("" : "+v"(c));
        a01 = _mm512_fmadd_ps(v0, c, a01); a11 = _mm512_fmadd_ps(v1, c, a11);
        a21 = _mm512_fmadd_ps(v2, c, a21); a31 = _mm512_fmadd_ps(v3, c, a31);
        c = _mm512_loadu_ps(x2 + k);
        __asm__("" : "+v"(c));
        a02 = _mm512_fmadd_ps(v0, c, a02); a12 = _mm512_fmadd_ps(v1, c, a12);
        a22 = _mm512_fmadd_ps(v2, c, a22); a32 = _mm512_fmadd_ps(v3, c, a32);
        c = _mm512_loadu_ps(x3 + k);
        __asm__("" : "+v"(c));
        a03 = _mm512_fmadd_ps(v0, c, a03); a13 = _mm512_fmadd_ps(v1, c, a13);
        a23 = _mm512_fmadd_ps(v2, c, a23); a33 = _mm512_fmadd_ps(v3, c, a33);
    }
#define ACC(R, B, A) acc[(R) * MAXB + (B)] = _mm512_add_ps(acc[(R) * MAXB + (B)], A)
    ACC(0, 0, a00); ACC(0, 1, a01); ACC(0, 2, a02); ACC(0, 3, a03);
    ACC(1, 0, a10); ACC(1, 1, a11); ACC(1, 2, a12); ACC(1, 3, a13);
    ACC(2, 0, a20); ACC(2, 1, a21); ACC(2, 2, a22); ACC(2, 3, a23);
    ACC(3, 0, a30); ACC(3, 1, a31); ACC(3, 2, a32); ACC(3, 3, a33);
#undef ACC
}

/* acc[r][b] += w_r . x_b over len (len % 16 == 0) for R rows and NB batch rows */
static inline __attribute__((always_inline)) void tile_fma(const float *restrict w, int64_t wstride,
                                                           const float *restrict x, int64_t xstride,
                                                           int64_t len, __m512 *restrict acc, int R, int NB) {
    __m512 a[4][4];
    for (int r = 0; r < R; ++r)
        for (int b = 0; b < NB; ++b) a[r][b] = _mm512_setzero_ps();
    for (int64_t k = 0; k < len; k += 16) {
        __m512 wv[4];
        for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_ps(w + r * wstride + k);
        for (int b = 0; b < NB; ++b) {
            const __m512 xv = _mm512_loadu_ps(x + b * xstride + k);
            for (int r = 0; r < R; ++r) a[r][b] = _mm512_fmadd_ps(wv[r], xv, a[r][b]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int b = 0; b < NB; ++b) acc[r * MAXB + b] = _mm512_add_ps(acc[r * MAXB + b], a[r][b]);
}
#endif

#if defined(__AVX512F__)
/* In place, per full chunk of 32 floats: [x0 x1 ... x31] -> [x0 x2 ... x30 x1 x3 ... x31], the order
 * in which 16 bytes of int4 codes unpack most cheaply (low nibbles, then high nibbles). */
static void deinterleave32(float *restrict p, int64_t len) {
    int32_t ev[16], od[16];
    for (int l = 0; l < 16; ++l) {
        ev[l] = 2 * l;
        od[l] = 2 * l + 1;
    }
    const __m512i ie = _mm512_loadu_si512((const void *)ev), io = _mm512_loadu_si512((const void *)od);
    for (int64_t k = 0; k + 32 <= len; k += 32) {
        const __m512 a = _mm512_loadu_ps(p + k), b = _mm512_loadu_ps(p + k + 16);
        _mm512_storeu_ps(p + k, _mm512_permutex2var_ps(a, ie, b));
        _mm512_storeu_ps(p + k + 16, _mm512_permutex2var_ps(a, io, b));
    }
}

/* Batch 1, g % 16 == 0 (int4: g % 32 == 0 and x deinterleaved by deinterleave32): dequantization
 * fused into the FMAs. Per group and row, t = sum (u - z) * x over the group's codes (exact integers
 * times x), then acc += s * t, so the inner loop never rescales per code. int4: per 32 codes and row
 * one zero-extending load, one shift, two lookups in a 16-entry table of (u - z) (vpermps reads only
 * the low 4 bits of each index lane, so a byte indexes its low nibble directly and the byte shifted
 * right by 4 its high nibble; the table is a constant when symmetric) and two FMAs. int8: t = sum u * x
 * and the zero point enters once per row as sum_g s_g * z_g * xs[g] (xs: group sums of x). Per group
 * one broadcast scale and one FMA. R rows (1 or 4) share each x load.
 * sbuf: thread scratch of >= 4 * ngroups floats for the rows' scales converted to fp32. */
static inline __attribute__((always_inline)) void gemv_fused_r(const qmat *q, int64_t o0,
                                                               const float *restrict x,
                                                               const float *restrict xs,
                                                               float *restrict y, float *restrict sbuf,
                                                               const int R) {
    const int64_t ngroups = q->in / q->g, row_bytes = q->in * q->bits / 8;
    const float zdef = (float)(1 << (q->bits - 1));
    const __m512 lut = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 lut_sym = _mm512_sub_ps(lut, _mm512_set1_ps(zdef));
    const uint8_t *crow[4];
    float *srow[4];
    for (int r = 0; r < R; ++r) {
        crow[r] = q->codes + (o0 + r) * row_bytes;
        srow[r] = sbuf + r * ngroups;
        const int64_t base = (o0 + r) * ngroups;
        int64_t gi = 0;
        if (q->scale_f16) {
            const uint16_t *sh = (const uint16_t *)q->scales + base;
            for (; gi + 16 <= ngroups; gi += 16)
                _mm512_storeu_ps(srow[r] + gi, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sh + gi))));
        }
        for (; gi < ngroups; ++gi) srow[r][gi] = scale_at(q, o0 + r, gi);
    }
    __m512 acc[4];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t gi = 0; gi < ngroups; ++gi) {
        __m512 t[4];
        for (int r = 0; r < R; ++r) t[r] = _mm512_setzero_ps();
        const int64_t kend = (gi + 1) * q->g;
        if (q->bits == 4) {
            __m512 lz[4]; /* table of (u - z) for this group and row */
            for (int r = 0; r < R; ++r)
                lz[r] = q->zeros ? _mm512_sub_ps(lut, _mm512_set1_ps((float)q->zeros[(o0 + r) * ngroups + gi]))
                                 : lut_sym;
            for (int64_t k = gi * q->g; k < kend; k += 32) { /* 16 bytes = 32 codes */
                const __m512 xe = _mm512_loadu_ps(x + k), xo = _mm512_loadu_ps(x + k + 16);
                for (int r = 0; r < R; ++r) {
                    if (!(k & 127)) _mm_prefetch((const char *)(crow[r] + k / 2 + PF), _MM_HINT_T0);
                    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(crow[r] + k / 2)));
                    t[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lz[r]), xo,
                                           _mm512_fmadd_ps(_mm512_permutexvar_ps(v, lz[r]), xe, t[r]));
                }
            }
        } else {
            for (int64_t k = gi * q->g; k < kend; k += 16) {
                const __m512 xv = _mm512_loadu_ps(x + k);
                for (int r = 0; r < R; ++r) {
                    if (!(k & 63)) _mm_prefetch((const char *)(crow[r] + k + PF), _MM_HINT_T0);
                    const __m512i u = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(crow[r] + k)));
                    t[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(u), xv, t[r]);
                }
            }
        }
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(t[r], _mm512_set1_ps(srow[r][gi]), acc[r]);
    }
    for (int r = 0; r < R; ++r) {
        float corr = 0.f; /* int8: sum_g s_g * z_g * xs[g]; int4 folded z into its table */
        if (q->bits == 4) {
            y[o0 + r] = _mm512_reduce_add_ps(acc[r]);
            continue;
        }
        const float *restrict sr = srow[r];
        if (q->zeros) {
            const uint8_t *restrict zr = q->zeros + (o0 + r) * ngroups;
#pragma omp simd reduction(+ : corr)
            for (int64_t gi = 0; gi < ngroups; ++gi) corr += sr[gi] * (float)zr[gi] * xs[gi];
        } else {
#pragma omp simd reduction(+ : corr)
            for (int64_t gi = 0; gi < ngroups; ++gi) corr += sr[gi] * xs[gi];
            corr *= zdef;
        }
        y[o0 + r] = _mm512_reduce_add_ps(acc[r]) - corr;
    }
}

/* xs[g] = sum of x over group g (x of length in) */
static void group_sums(const float *restrict x, int64_t in, int64_t g, float *restrict xs) {
    for (int64_t gi = 0; gi < in / g; ++gi) {
        float a = 0.f;
#pragma omp simd reduction(+ : a)
        for (int64_t k = 0; k < g; ++k) a += x[gi * g + k];
        xs[gi] = a;
    }
}

static int fused_ok(int64_t bits, int64_t g, int64_t batch) {
    return batch == 1 && (bits == 8 ? g % 16 == 0 : g % 32 == 0);
}

static void rows_gemv_fused(const qmat *q, int64_t o0, int rows, const float *restrict x,
                            const float *restrict xs, float *restrict y, float *restrict sbuf) {
    if (rows == 4) {
        gemv_fused_r(q, o0, x, xs, y, sbuf, 4);
    } else {
        for (int r = 0; r < rows; ++r) gemv_fused_r(q, o0 + r, x, xs, y, sbuf, 1);
    }
}
#endif

/* y[b, o0 + r] for r < rows (<= 4), b < batch: rows of q against x (batch, kp) with row stride xstride */
static void rows_gemm(const qmat *q, int64_t o0, int rows, const float *restrict x, int64_t xstride,
                      int64_t batch, float *restrict y, int64_t ystride, float *restrict buf, void *accmem,
                      int deint) {
    const int64_t kp = q->in;
    float tail[4][MAXB];
    /* NOTE: only the rows x batch entries in use are cleared: clearing all 4 x MAXB accumulators
     * (16 KiB + 1 KiB per 4-row tile) wrote 17 MB per call at 4096 rows, 2/3 of the int4 weight's
     * own bytes at batch 16 */
    for (int r = 0; r < rows; ++r) memset(tail[r], 0, sizeof(float) * (size_t)batch);
#if defined(__AVX512F__)
    __m512 *acc = (__m512 *)accmem; /* [4][MAXB] */
    for (int r = 0; r < 4; ++r)
        for (int64_t b = 0; b < batch; ++b) acc[r * MAXB + b] = _mm512_setzero_ps();
#else
    (void)accmem;
#endif
    for (int64_t k0 = 0; k0 < kp; k0 += KB) {
        const int64_t len = kp - k0 < KB ? kp - k0 : KB;
        int64_t vlen = len & ~(int64_t)15;
        for (int r = 0; r < rows; ++r) dequant_row(q, o0 + r, k0, k0 + len, buf + r * BS, deint);
#if defined(__AVX512F__)
        if (vlen) {
            int64_t b = 0;
            if (rows == 4) {
                for (; b + 4 <= batch; b += 4)
                    tile_fma_4x4(buf, BS, x + b * xstride + k0, xstride, vlen, acc + b);
                for (; b < batch; ++b) tile_fma(buf, BS, x + b * xstride + k0, xstride, vlen, acc + b, 4, 1);
            } else {
                for (int r = 0; r < rows; ++r) {
                    for (b = 0; b + 4 <= batch; b += 4)
                        tile_fma(buf + r * BS, BS, x + b * xstride + k0, xstride, vlen, acc + r * MAXB + b, 1, 4);
                    for (; b < batch; ++b)
                        tile_fma(buf + r * BS, BS, x + b * xstride + k0, xstride, vlen, acc + r * MAXB + b, 1, 1);
                }
            }
        }
#else
        vlen = 0;
#endif
        for (int r = 0; r < rows; ++r)
            for (int64_t b = 0; b < batch; ++b) {
                const float *restrict wr = buf + r * BS, *restrict xb = x + b * xstride + k0;
                float t = 0.f;
                for (int64_t k = vlen; k < len; ++k) t += wr[k] * xb[k];
                tail[r][b] += t;
            }
    }
    for (int r = 0; r < rows; ++r)
        for (int64_t b = 0; b < batch; ++b) {
#if defined(__AVX512F__)
            y[b * ystride + o0 + r] = _mm512_reduce_add_ps(acc[r * MAXB + b]) + tail[r][b];
#else
            y[b * ystride + o0 + r] = tail[r][b];
#endif
        }
}

static void *thread_alloc(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Dense weight-only quant GEMM. Returns 0, 2 (allocation failed) or 3 (bad arguments). */
int quant_gemm_f32(const float *restrict x, const uint8_t *codes, const void *scales, int scale_f16,
                   const uint8_t *zeros, float *restrict y, int64_t out, int64_t in, int64_t bits,
                   int64_t g, int64_t batch, int nthreads) {
    if ((bits != 4 && bits != 8) || g < 1 || in % g || (bits == 4 && g % 2) || batch > MAXB) return 3;
    const qmat q = {codes, scales, zeros, in, g, bits, scale_f16};
    const int64_t tiles = (out + 3) / 4;
    int status = 0;
    int fused = 0, deint = 0;
    float *xd = NULL;
#if defined(__AVX512F__)
    fused = fused_ok(bits, g, batch);
    deint = bits == 4 && g % 32 == 0;
    if (deint) { /* x reordered to the int4 unpack order, once per call */
        xd = (float *)thread_alloc(sizeof(float) * (size_t)(in * batch));
        if (!xd) return 2;
        memcpy(xd, x, sizeof(float) * (size_t)(in * batch));
        for (int64_t b = 0; b < batch; ++b) deinterleave32(xd + b * in, in);
    }
#endif
    const float *xf = xd ? xd : x;
    float *xs = NULL; /* group sums of x for the fused path's zero-point term */
    (void)fused;
#if defined(__AVX512F__)
    if (fused && bits == 8) {
        xs = (float *)thread_alloc(sizeof(float) * (size_t)(in / g));
        if (!xs) {
            free(xd);
            return 2;
        }
        group_sums(x, in, g, xs);
    }
#endif
#pragma omp parallel num_threads(nthreads)
    {
        float *buf = (float *)thread_alloc(sizeof(float) * (4 * BS > 4 * (in / g) ? 4 * BS : 4 * (in / g)));
        void *acc = thread_alloc(64 * 4 * MAXB);
        if (!buf || !acc) {
#pragma omp atomic write
            status = 2;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; ++t) {
            if (!buf || !acc) continue;
            const int64_t o0 = t * 4;
            const int rows = (int)(out - o0 < 4 ? out - o0 : 4);
#if defined(__AVX512F__)
            if (fused) { /* buf doubles as the scale scratch */
                rows_gemv_fused(&q, o0, rows, xf, xs, y, buf);
                continue;
            }
#endif
            rows_gemm(&q, o0, rows, xf, in, batch, y, out, buf, acc, deint);
        }
        free(buf);
        free(acc);
    }
    free(xd);
    free(xs);
    return status;
}


/* N:M + quant. q describes the (out, kp) kept values; off: uint8 in-group offsets (n_vec, kp) or
 * NULL; packed: the format's bit-packed indices, one block of kp per vector block (used for 1:2 / 2:4
 * on AVX-512 when off is NULL). Returns 0, 2 (allocation) or 3 (bad arguments). */
int nmq_gemm_f32(const float *restrict x, const uint8_t *codes, const void *scales, int scale_f16,
                 const uint8_t *zeros, const uint8_t *off, const uint8_t *packed, float *restrict y,
                 int64_t out, int64_t in, int64_t n, int64_t m, int64_t v, int64_t bits, int64_t g,
                 int64_t batch, int nthreads) {
    const int64_t kp = in / m * n, n_vec = (out + v - 1) / v;
    if ((bits != 4 && bits != 8) || g < 1 || kp % g || (bits == 4 && g % 2) || batch > MAXB) return 3;
    const int half_packed = off == NULL;
    (void)packed; /* read by the AVX-512 gather only */
#if defined(__AVX512F__)
    if (half_packed && !(((n == 1 && m == 2) || (n == 2 && m == 4)) && (kp * (m == 2 ? 1 : 2)) % 8 == 0))
        return 3;
#else
    if (half_packed) return 3;
#endif
    const qmat q = {codes, scales, zeros, kp, g, bits, scale_f16};
    const int sn = log2_exact(n), sm = log2_exact(m), pow2 = sn >= 0 && sm >= 0;
    int status = 0, deint = 0;
#if defined(__AVX512F__)
    deint = bits == 4 && g % 32 == 0;
#endif
#pragma omp parallel num_threads(nthreads)
    {
        float *buf = (float *)thread_alloc(sizeof(float) * (4 * BS > 4 * (kp / g) ? 4 * BS : 4 * (kp / g)));
        void *acc = thread_alloc(64 * 4 * MAXB);
        float *gx = (float *)thread_alloc(sizeof(float) * (size_t)(kp * batch + 16));
        float *xs = (float *)thread_alloc(sizeof(float) * (size_t)(kp / g + 1));
        if (!buf || !acc || !gx || !xs) {
#pragma omp atomic write
            status = 2;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_vec; ++blk) {
            if (!buf || !acc || !gx || !xs) continue;
            const int64_t r0 = blk * v, rows = (r0 + v <= out) ? v : out - r0;
            /* gather: gx[b, k] = x[b, col(k)] */
            for (int64_t b = 0; b < batch; ++b) {
                const float *restrict xb = x + b * in;
                float *restrict dst = gx + b * kp;
                int64_t k = 0;
#if defined(__AVX512F__)
                if (half_packed) { /* 16 kept values come from one window of 32 inputs */
                    const int64_t ib = m == 2 ? 1 : 2;
                    const uint8_t *restrict prow = packed + blk * kp * ib / 8;
                    int32_t base_arr[16], shift_arr[16];
                    for (int l = 0; l < 16; ++l) {
                        base_arr[l] = (int32_t)((l / n) * m);
                        shift_arr[l] = (int32_t)(l * ib);
                    }
                    const __m512i base = _mm512_loadu_si512((const void *)base_arr);
                    const __m512i shifts = _mm512_loadu_si512((const void *)shift_arr);
                    const __m512i mask = _mm512_set1_epi32((int32_t)(m - 1));
                    for (; k + 16 <= kp; k += 16) {
                        const uint32_t word = ib == 2 ? *(const uint32_t *)(const void *)(prow + k / 4)
                                                      : *(const uint16_t *)(const void *)(prow + k / 8);
                        const __m512i ix = _mm512_add_epi32(
                            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int32_t)word), shifts), mask), base);
                        _mm512_storeu_ps(dst + k, _mm512_permutex2var_ps(_mm512_loadu_ps(xb + 2 * k), ix,
                                                                         _mm512_loadu_ps(xb + 2 * k + 16)));
                    }
                    for (; k < kp; ++k) {
                        const int64_t bit = k * ib;
                        dst[k] = xb[(k / n) * m + ((prow[bit / 8] >> (bit % 8)) & (m - 1))];
                    }
                    continue;
                }
#endif
                const uint8_t *restrict orow = off + blk * kp;
                if (pow2) {
                    for (; k < kp; ++k) dst[k] = xb[((k >> sn) << sm) + orow[k]];
                } else {
                    for (; k < kp; ++k) dst[k] = xb[(k / n) * m + orow[k]];
                }
            }
#if defined(__AVX512F__)
            if (deint)
                for (int64_t b = 0; b < batch; ++b) deinterleave32(gx + b * kp, kp);
            if (bits == 8 && fused_ok(bits, g, batch)) group_sums(gx, kp, g, xs);
#endif
            for (int64_t o = r0; o < r0 + rows; o += 4) {
                const int tr = (int)(r0 + rows - o < 4 ? r0 + rows - o : 4);
#if defined(__AVX512F__)
                if (fused_ok(bits, g, batch)) {
                    rows_gemv_fused(&q, o, tr, gx, xs, y, buf);
                    continue;
                }
#endif
                rows_gemm(&q, o, tr, gx, kp, batch, y, out, buf, acc, deint);
            }
        }
        free(buf);
        free(acc);
        free(gx);
        free(xs);
    }
    return status;
}

/* N:M + quant with v = 1 and batch > 1: per row, the kept values are dequantized once into a thread
 * buffer, then each kept value does one 16-wide FMA against its column of the K-major x (xt: (in, bp),
 * bp a multiple of 16, zero padded), as the fp32 kernel's nm_spmm_rows_kmajor_f32 does: a per-row
 * gather of (batch x kp) activations would cost more than the FMAs. Returns 0, 2 or 3. */
int nmq_rows_kmajor_f32(const float *restrict xt, const uint8_t *codes, const void *scales, int scale_f16,
                        const uint8_t *zeros, const uint8_t *off, float *restrict y, int64_t out,
                        int64_t in, int64_t n, int64_t m, int64_t bits, int64_t g, int64_t bp,
                        int64_t batch, int nthreads) {
    const int64_t kp = in / m * n;
    if ((bits != 4 && bits != 8) || g < 1 || kp % g || (bits == 4 && g % 2) || bp % 16 || batch > bp)
        return 3;
    const qmat q = {codes, scales, zeros, kp, g, bits, scale_f16};
    const nm_geom geo = nm_geometry(n, m);
    int status = 0;
#pragma omp parallel num_threads(nthreads)
    {
        float *wrow = (float *)thread_alloc(sizeof(float) * (size_t)(kp + 16));
        if (!wrow) {
#pragma omp atomic write
            status = 2;
        }
#pragma omp for schedule(static)
        for (int64_t o = 0; o < out; ++o) {
            if (!wrow) continue;
            dequant_row(&q, o, 0, kp, wrow, 0);
            nm_row_kmajor(&geo, wrow, off + o * kp, kp, xt, bp, batch, y, out, o);
        }
        free(wrow);
    }
    return status;
}
