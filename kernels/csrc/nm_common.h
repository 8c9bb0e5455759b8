/* Shared by the native N:M (kernels/nm/csrc/nm_cpu.c) and N:M + low-bit (kernels/quant/csrc/quant_cpu.c)
 * kernels: the in-group index arithmetic and the v = 1, batch > 1 row kernel against K-major x.
 * Compiled into each library with -I kernels/csrc (kernels/native_build.py hashes this header too). */
#ifndef REPROLAB_NM_COMMON_H
#define REPROLAB_NM_COMMON_H
#include <stdint.h>

/* log2(a) when a is a power of two, else -1 */
static inline int log2_exact(int64_t a) {
    int s = 0;
    while ((INT64_C(1) << s) < a) ++s;
    return (INT64_C(1) << s) == a ? s : -1;
}

/* In-group geometry of an N:M pattern: column of compacted position k is (k / n) * m + off[k]
 * (shifts when n and m are powers of two). */
typedef struct {
    int64_t n, m;
    int sn, sm, pow2;
} nm_geom;

static inline nm_geom nm_geometry(int64_t n, int64_t m) {
    nm_geom g = {n, m, log2_exact(n), log2_exact(m), 0};
    g.pow2 = g.sn >= 0 && g.sm >= 0;
    return g;
}

static inline int64_t nm_col(const nm_geom *g, const uint8_t *restrict orow, int64_t k) {
    return g->pow2 ? (((k >> g->sn) << g->sm) + orow[k]) : ((k / g->n) * g->m + orow[k]);
}

/* One output row o of an N:M weight with v = 1 against K-major x (xt: (in, bp), bp a multiple of 16,
 * zero padded): y[b, o] = sum_k w[k] * xt[col(k), b] for b < batch. Each kept value meets 16
 * contiguous batch entries of its column: one broadcast FMA into a 16-wide accumulator per kept value
 * and batch chunk; four accumulators break the FMA latency chain. w: the row's kp kept values (fp32). */
static inline void nm_row_kmajor(const nm_geom *g, const float *restrict w, const uint8_t *restrict orow,
                                 int64_t kp, const float *restrict xt, int64_t bp, int64_t batch,
                                 float *restrict y, int64_t out, int64_t o) {
    for (int64_t b0 = 0; b0 < batch; b0 += 16) {
        float acc[16] = {0}, acc1[16] = {0}, acc2[16] = {0}, acc3[16] = {0};
        int64_t k = 0;
        for (; k + 4 <= kp; k += 4) {
            const float *restrict x0 = xt + nm_col(g, orow, k) * bp + b0;
            const float *restrict x1 = xt + nm_col(g, orow, k + 1) * bp + b0;
            const float *restrict x2 = xt + nm_col(g, orow, k + 2) * bp + b0;
            const float *restrict x3 = xt + nm_col(g, orow, k + 3) * bp + b0;
            const float a0 = w[k], a1 = w[k + 1], a2 = w[k + 2], a3 = w[k + 3];
#pragma omp simd
            for (int b = 0; b < 16; ++b) {
                acc[b] += a0 * x0[b];
                acc1[b] += a1 * x1[b];
                acc2[b] += a2 * x2[b];
                acc3[b] += a3 * x3[b];
            }
        }
        for (; k < kp; ++k) {
            const float a = w[k];
            const float *restrict xb = xt + nm_col(g, orow, k) * bp + b0;
#pragma omp simd
            for (int b = 0; b < 16; ++b) acc[b] += a * xb[b];
        }
        for (int64_t b = b0; b < batch && b < b0 + 16; ++b)
            y[b * out + o] = acc[b - b0] + acc1[b - b0] + acc2[b - b0] + acc3[b - b0];
    }
}

#endif
