/* W4A8 / W8A8 on CPU: weight codes (kernels/quant/format.py) x activations quantized to int8 on the
 * fly, integer dot products, fp32 out. Called through ctypes by kernels/quant/native_a8.py.
 *
 * Per activation row b (symmetric, per row):
 *   amax_b = max_k |x[b, k]|,  inv_b = 127 / amax_b (0 when amax_b == 0),  sx_b = amax_b / 127
 *   xq[b, k] = clamp(rint(x[b, k] * inv_b), -127, 127)          (rint: round half to even)
 * Per weight group (s = scale, u = code, z = zero point; symmetric: z = 2^(bits-1)), with the code
 * shifted to what the dot product multiplies (v = u for int4, v = u - 128 for int8) and ze = z - (u - v):
 *   y[b, o] = sx_b * sum_g s[o, g] * (sum_{k in g} v[o, k] * xq[b, k]  -  ze[o, g] * Sx[b, g])
 * with Sx[b, g] = sum_{k in g} xq[b, k], so the zero point costs one multiply-add per group, not one
 * per code. The integer part is exact; only the fp32 sum over groups rounds.
 *
 * Dot products, 32 codes per instruction group:
 * - AVX-512 VNNI (+VL) or AVX-VNNI: vpdpbusd (u8 x s8, 4 products summed into each int32 lane).
 * - AVX2 (this machine: Zen 2 class, no AVX-512): vpmaddubsw (u8 x s8 -> pairs summed into int16)
 *   then vpmaddwd with ones (-> int32). The int16 pair sum cannot saturate: int4 codes are <= 15
 *   (2 * 15 * 127 < 32767); int8 uses |v| x sign(xq, v) (|v| <= 128 as u8, |xq| <= 127:
 *   2 * 128 * 127 = 32512 < 32767).
 * int4 unpack: 16 bytes of codes, & 0x0F (low 128-bit lane: even codes) and >> 4 & 0x0F (high lane:
 * odd codes); x is reordered once per call to that order (per full
 * chunk of 32 codes inside each group). Codes of a group past its last full chunk of 32 run scalar.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define A8_ISA 3
#define DOT(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#elif defined(__AVXVNNI__)
#define A8_ISA 2
#define DOT(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#elif defined(__AVX2__)
#define A8_ISA 1
#define DOT(acc, u, s) _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), ones16))
#else
#define A8_ISA 0
#endif

/* 0: no integer-dot path (the library refuses to run), 1: AVX2 maddubs, 2: AVX-VNNI, 3: AVX-512 VNNI */
int qa8_isa(void) { return A8_ISA; }

#if A8_ISA > 0

#define MAXRO 4
#ifndef PF
#define PF 1024 /* software prefetch distance along a row of codes, bytes */
#endif
#define MAXRB 4

/* Quantize row b of x into xq (int4: full 32-code chunks of each group reordered even/odd), its
 * scale sx and per-group sums sxg. */
static void quantize_row(const float *restrict x, int64_t K, int64_t g, int bits, int8_t *restrict xq,
                         float *restrict sx, float *restrict sxg) {
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = fmaxf(amax, fabsf(x[k]));
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    *sx = amax / 127.f;
    const int64_t G = K / g, nfull = g / 32;
    for (int64_t gi = 0; gi < G; ++gi) {
        int32_t sum = 0;
        for (int64_t k = gi * g; k < gi * g + g; ++k) {
            float r = rintf(x[k] * inv);
            r = r > 127.f ? 127.f : (r < -127.f ? -127.f : r);
            const int8_t v = (int8_t)r;
            sum += v;
            const int64_t c = (k - gi * g) / 32, p = (k - gi * g) % 32;
            int64_t dst = k;
            if (bits == 4 && c < nfull) dst = gi * g + c * 32 + ((p & 1) ? 16 + p / 2 : p / 2);
            xq[dst] = v;
        }
        sxg[gi] = (float)sum;
    }
}

/* Rows o..o+RO-1 against batch rows b0..b0+RB-1. sz: 2 * MAXRO * G floats of scratch (the rows'
 * scales in fp32, and scale * ze per group for the zero-point term). */
static inline __attribute__((always_inline)) void
tile(const int RO, const int RB, const uint8_t *restrict codes, int64_t cstride, const void *scales,
     int f16, const uint8_t *restrict zeros, int bits, int64_t K, int64_t g, const int8_t *restrict xq,
     const float *restrict sx, const float *restrict sxg, float *restrict y, int64_t O, int64_t o,
     int64_t b0, float *restrict sz) {
    const __m256i ones16 = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0F);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    (void)ones16;
    const int64_t G = K / g, nfull = g / 32;
    const int zdef = bits == 4 ? 8 : 128, shift = bits == 4 ? 0 : 128; /* ze = z - shift */
    float *restrict srow = sz, *restrict zrow = sz + MAXRO * G;
    /* per row: scales in fp32 and scale * ze (kept out of the group loop below) */
    for (int r = 0; r < RO; ++r) { /* branch-free loops, so they vectorize */
        const int64_t base = (o + r) * G;
        float *restrict sr = srow + r * G, *restrict zr = zrow + r * G;
        if (f16) {
            const uint16_t *h = (const uint16_t *)scales + base;
            int64_t gi = 0;
            for (; gi + 8 <= G; gi += 8) _mm256_storeu_ps(sr + gi, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + gi))));
            for (; gi < G; ++gi) sr[gi] = _cvtsh_ss(h[gi]);
        } else {
            memcpy(sr, (const float *)scales + base, sizeof(float) * (size_t)G);
        }
        if (zeros) {
            const uint8_t *zz = zeros + base;
            for (int64_t gi = 0; gi < G; ++gi) zr[gi] = sr[gi] * (float)((int)zz[gi] - shift);
        } else {
            const float zc = (float)(zdef - shift);
            for (int64_t gi = 0; gi < G; ++gi) zr[gi] = sr[gi] * zc;
        }
    }
    __m256 facc[MAXRO][MAXRB];
#pragma GCC unroll 4
    for (int r = 0; r < RO; ++r)
#pragma GCC unroll 4
        for (int bb = 0; bb < RB; ++bb) facc[r][bb] = _mm256_setzero_ps();
    for (int64_t gi = 0; gi < G; ++gi) {
        __m256i iacc[MAXRO][MAXRB];
#pragma GCC unroll 4
        for (int r = 0; r < RO; ++r)
#pragma GCC unroll 4
            for (int bb = 0; bb < RB; ++bb) iacc[r][bb] = _mm256_setzero_si256();
        for (int64_t c = 0; c < nfull; ++c) {
            const int64_t k0 = gi * g + c * 32;
            __m256i wv[MAXRO], wa[MAXRO];
#pragma GCC unroll 4
            for (int r = 0; r < RO; ++r) {
                const uint8_t *row = codes + (o + r) * cstride;
                if (bits == 4) {
                    /* 128-bit halves (one uop each on Zen 1/2, unlike a 256-bit variable shift) */
                    const __m128i b = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
                    if ((k0 & 127) == 0) _mm_prefetch((const char *)(row + k0 / 2 + PF), _MM_HINT_T0);
                    const __m128i lo = _mm_and_si128(b, _mm256_castsi256_si128(low4));
                    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm256_castsi256_si128(low4));
                    wv[r] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
                    wa[r] = wv[r];
                } else {
                    if ((k0 & 63) == 0) _mm_prefetch((const char *)(row + k0 + PF), _MM_HINT_T0);
                    wv[r] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + k0)), flip);
                    wa[r] = _mm256_abs_epi8(wv[r]);
                }
            }
#pragma GCC unroll 4
            for (int bb = 0; bb < RB; ++bb) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (b0 + bb) * K + k0));
#pragma GCC unroll 4
                for (int r = 0; r < RO; ++r) {
                    if (bits == 4) iacc[r][bb] = DOT(iacc[r][bb], wa[r], xv);
                    else iacc[r][bb] = DOT(iacc[r][bb], wa[r], _mm256_sign_epi8(xv, wv[r]));
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < RO; ++r) {
            const __m256 sv = _mm256_broadcast_ss(srow + r * G + gi);
#pragma GCC unroll 4
            for (int bb = 0; bb < RB; ++bb) facc[r][bb] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r][bb]), sv, facc[r][bb]);
        }
    }
    for (int r = 0; r < RO; ++r) {
        const uint8_t *row = codes + (o + r) * cstride;
        for (int bb = 0; bb < RB; ++bb) {
            const float *sg = sxg + (b0 + bb) * G;
            const float *zr = zrow + r * G;
            float corr = 0.f, tails = 0.f;
#pragma omp simd reduction(+ : corr)
            for (int64_t gi = 0; gi < G; ++gi) corr += zr[gi] * sg[gi];
            if (nfull * 32 < g) { /* codes past each group's last full chunk of 32: scalar, natural order */
                const int8_t *xr = xq + (b0 + bb) * K;
                for (int64_t gi = 0; gi < G; ++gi) {
                    int32_t t = 0;
                    for (int64_t k = gi * g + nfull * 32; k < gi * g + g; ++k) {
                        const int u = bits == 4 ? ((row[k >> 1] >> ((k & 1) * 4)) & 0xF) : (int)row[k];
                        t += (u - shift) * xr[k];
                    }
                    tails += srow[r * G + gi] * (float)t;
                }
            }
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(facc[r][bb]), _mm256_extractf128_ps(facc[r][bb], 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            y[(b0 + bb) * O + o + r] = sx[b0 + bb] * (_mm_cvtss_f32(h) + tails - corr);
        }
    }
}

#define TILE(RO_, RB_) tile(RO_, RB_, codes, cstride, scales, f16, zeros, bits, K, g, xq, sx, sxg, y, O, o, b0, sz)

/* rows [o_lo, o_hi) for every batch row */
static void rows(const uint8_t *codes, int64_t cstride, const void *scales, int f16, const uint8_t *zeros,
                 int bits, int64_t K, int64_t g, const int8_t *xq, const float *sx, const float *sxg,
                 float *y, int64_t O, int64_t B, int64_t o_lo, int64_t o_hi, float *sz) {
    if (B == 1) {
        const int64_t b0 = 0;
        int64_t o = o_lo;
        for (; o + 4 <= o_hi; o += 4) TILE(4, 1);
        for (; o < o_hi; ++o) TILE(1, 1);
        return;
    }
    int64_t o = o_lo;
    for (; o < o_hi; ++o) {
        int64_t b0 = 0;
        for (; b0 + 4 <= B; b0 += 4) TILE(1, 4);
        for (; b0 < B; ++b0) TILE(1, 1);
    }
}

#endif /* A8_ISA > 0 */

/* y (B, O) = x (B, K) @ dequantize(codes, scales, zeros).T with x quantized to int8 per row.
 * Returns 0 on success, 1 when this build has no integer-dot path, 2 on allocation failure. */
int qa8_gemm_f32(const float *x, const uint8_t *codes, const void *scales, int f16, const uint8_t *zeros,
                 float *y, int64_t O, int64_t K, int bits, int64_t g, int64_t B, int threads) {
#if A8_ISA == 0
    (void)x; (void)codes; (void)scales; (void)f16; (void)zeros; (void)y; (void)O; (void)K; (void)bits;
    (void)g; (void)B; (void)threads;
    return 1;
#else
    const int64_t G = K / g, cstride = K * bits / 8;
    int8_t *xq = malloc((size_t)(B * K + 32));
    float *sx = malloc(sizeof(float) * (size_t)B), *sxg = malloc(sizeof(float) * (size_t)(B * G));
    if (!xq || !sx || !sxg) { free(xq); free(sx); free(sxg); return 2; }
    for (int64_t b = 0; b < B; ++b) quantize_row(x + b * K, K, g, bits, xq + b * K, sx + b, sxg + b * G);
    int status = 0;
    if (threads <= 1) { /* no OpenMP region: its wake-up dominates small layers */
        float *sz = malloc(sizeof(float) * (size_t)(2 * MAXRO * G));
        if (!sz) status = 2;
        else rows(codes, cstride, scales, f16, zeros, bits, K, g, xq, sx, sxg, y, O, B, 0, O, sz);
        free(sz);
    } else {
#pragma omp parallel num_threads(threads) reduction(| : status)
        {
            float *sz = malloc(sizeof(float) * (size_t)(2 * MAXRO * G));
            if (!sz) status |= 2;
            /* every thread meets the worksharing loop, even one whose scratch failed */
#pragma omp for schedule(static)
            for (int64_t t = 0; t < (O + 15) / 16; ++t) {
                const int64_t lo = t * 16, hi = lo + 16 < O ? lo + 16 : O;
                if (sz) rows(codes, cstride, scales, f16, zeros, bits, K, g, xq, sx, sxg, y, O, B, lo, hi, sz);
            }
            free(sz);
        }
    }
    free(xq); free(sx); free(sxg);
    return status;
#endif
}
