/* Exact fp32-activation low-bit matmul on AMX-BF16: y = x @ dequantize(w).T (kernels/quant/native_amx.py).
 *
 * Why it is exact (the contract of the fp32 `native` kernel, up to fp32 summation order):
 *  - every weight code value d = u - z is a small integer: int4 |d| <= 15, int8 |d| <= 255, so it is exactly
 *    a bf16 (8-bit significand);
 *  - every fp32 activation is split into three bf16 parts, x = hi + mid + lo, by truncation:
 *    hi = x with the low 16 bits cleared (the top 8 significand bits), r = x - hi (exact in fp32: it has at
 *    most the 16 remaining significand bits), mid = r with the low 16 bits cleared, lo = r - mid (exact: the
 *    last 8 bits, a bf16). Truncation instead of round-to-nearest keeps the argument the same and cannot
 *    overflow to inf near FLT_MAX;
 *  - a product d * part has at most 8 + 8 significand bits, so it is exact in fp32; TDPBF16PS accumulates
 *    those exact products in fp32, so sum_k d_k x_k comes out with fp32 accumulation rounding only, like any
 *    fp32 kernel. The group scale is applied at the end of each group, or of each block of 8 K-steps
 *    (int8: 4) when a group is longer: acc += C * s with fp32 FMAs.
 * Caveats (assumptions, documented in docs/kernels.md): TDPBF16PS treats bf16 denormal inputs as zero and
 * flushes denormal outputs, so a part below 2^-126 is lost: activations with |x| < ~2^-102 (about 2e-31) lose
 * their low bits (an absolute error below ~1e-38 per term). Non-finite x: hi = x (inf, or a quiet NaN),
 * mid = lo = 0, so inf * 0 gives NaN as in the fp32 reference.
 *
 * Layout. AMX computes C[m][n] += sum_k A[m][k] B[k][n] with A a plain row-major (16 x 32 bf16) tile and B in
 * VNNI pairs (16 rows of 16 x (k, k+1) bf16 pairs). The weight is the A operand (rows = output rows): one
 * A row is 32 consecutive codes of one weight row in natural k order, so the packed codes never need a
 * transpose (int4: byte j holds codes 2j, 2j+1 = one bf16 pair). x is the B operand, prepared once per call
 * as VNNI pairs (n = batch column). Two A tiles (32 weight rows) share each B load.
 *  - batch <= 5 ("packed"): one B tile holds the three parts side by side as 3*batch columns; one TDPBF16PS
 *    per step and A tile; the three partial sums are added once per output at the end;
 *  - batch > 5 ("split"): per chunk of 16 batch rows, three B tiles (hi, mid, lo) accumulate into the same C.
 * Weight conversion (per 32 codes of one row, AVX-512): int4: vpmovzxbd, a shift and a vpternlogd put
 * (low nibble, high nibble) in the two words of each dword, [a vpsubw of z - 15 when asymmetric] and one
 * vpermw looks the bf16 of (u - z) up in a 32-entry table. int8: two vpmovzxbd + vcvtdq2ps, a subtraction of
 * the zero point in fp32 (exact), vcvtne2ps2bf16 (exact: the values are integers <= 255 in magnitude).
 * Supported: bits 4 or 8, group % 32 == 0, or one group per row (group == in, any width: the last step is
 * zero padded). Anything else returns 2 (the Python side checks first).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BW__) && defined(__AVX512BF16__) && defined(__AVX512VL__)
#define QAMX 1
#include <immintrin.h>
#endif

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#ifndef ROWS
#define ROWS 32   /* weight rows per block (2 row tiles of 16; every B load serves both). Cold, 1 thread,
                     4096x11008 int4 g32: 32 rows x 8 steps 5.5 ms at batch 1, 9.8 at 16; 64 x 4: 11.1 / 14.5;
                     16 x 16: 6.3 / 14.4 (fewer concurrent row streams, longer runs per row, keep DRAM busy) */
#endif
#ifndef KC
#define KC 8      /* K-steps (of 32 codes) per block for int4 (128 B of codes per row), int8: KC / 2 (also
                     128 B; measured 6.7 vs 8.2 ms at batch 1); A tiles: 32 rows x 8 x 64 B = 16 KB in L1 */
#endif
#ifndef PFD
#define PFD 8     /* prefetch distance in K-steps */
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T0
#endif

static int g_perm = -2;  /* -2: not asked yet; 0: granted; -1: refused or not built */

/* Ask the kernel for AMX tile data permission (once per process; it covers every thread). 0 = usable. */
int qamx_init(void) {
#ifdef QAMX
    if (g_perm == -2)
        g_perm = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 0 : -1;
    return g_perm;
#else
    return -1;
#endif
}

#ifdef QAMX
typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tilecfg_t;

static void load_config(void) {
    tilecfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 7; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }  /* every tile 16 x 64 B */
    _tile_loadconfig(&cfg);
}

static inline uint16_t bf16_of_int(int v) {  /* exact for |v| <= 256 */
    float f = (float)v;
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)(b >> 16);
}

static inline float f32_of_fp16(uint16_t h) { return _cvtsh_ss(h); }

/* x (batch, in) -> B tiles. Tile t of step s starts at xs + (s * ntiles + t) * 512 (uint16); row kp, column n
 * holds the pair (part(x[row(n)][32s + 2kp]), part(x[row(n)][32s + 2kp + 1])). packed: column p*batch + b of
 * tile 0; split: tile 3c + p, column b - 16c. Per 32 activations and part: the split in fp32 bit operations,
 * one vcvtne2ps2bf16 (exact: the parts have no bits below bf16's; NaN stays NaN) and one dword scatter down
 * the tile's column. */
static void prepare_x(const float *x, uint16_t *xs, int64_t in, int64_t batch, int64_t nsteps, int ntiles, int packed) {
    memset(xs, 0, (size_t)nsteps * ntiles * 1024);
    const int64_t fullsteps = in / 32;
    const __m512i top = _mm512_set1_epi32((int)0xFFFF0000u), expo = _mm512_set1_epi32(0x7F800000);
    const __m512i rowidx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32(16));  /* dword offset of tile row kp */
    float tailbuf[32] __attribute__((aligned(64)));
    for (int64_t b = 0; b < batch; b++) {
        const float *row = x + b * in;
        for (int64_t s = 0; s < nsteps; s++) {
            const float *src = row + s * 32;
            if (s >= fullsteps) {  /* zero-padded last step */
                memset(tailbuf, 0, sizeof tailbuf);
                memcpy(tailbuf, src, (size_t)(in - s * 32) * sizeof(float));
                src = tailbuf;
            }
            __m512 v[2], part[3][2];
            v[0] = _mm512_loadu_ps(src);
            v[1] = _mm512_loadu_ps(src + 16);
            for (int h = 0; h < 2; h++) {
                const __m512i xb = _mm512_castps_si512(v[h]);
                const __mmask16 fin = _mm512_cmpneq_epi32_mask(_mm512_and_si512(xb, expo), expo);
                const __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(xb, top));
                const __m512 r = _mm512_sub_ps(v[h], hi);  /* exact */
                const __m512 mid = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r), top));
                part[0][h] = _mm512_mask_blend_ps(fin, v[h], hi);  /* inf / NaN: the value itself */
                part[1][h] = _mm512_maskz_mov_ps(fin, mid);
                part[2][h] = _mm512_maskz_mov_ps(fin, _mm512_sub_ps(r, mid));  /* exact */
            }
            for (int p = 0; p < 3; p++) {
                int t, col;
                if (packed) { t = 0; col = (int)(p * batch + b); }
                else { t = (int)(3 * (b >> 4) + p); col = (int)(b & 15); }
                const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(part[p][1], part[p][0]);  /* k order */
                _mm512_i32scatter_epi32((int *)(xs + (s * ntiles + t) * 512) + col, rowidx, words, 4);
            }
        }
    }
}

/* Scalar conversion of one (possibly partial) step of one row: used for the zero-padded last step of a
 * per-row group whose width is not a multiple of 32. */
static void convert_tail(const uint8_t *rowcodes, int64_t k0, int64_t in, int bits, int z, uint16_t *dst) {
    for (int i = 0; i < 32; i++) {
        int64_t k = k0 + i;
        int d = 0;
        if (k < in) {
            int u = bits == 8 ? rowcodes[k] : ((rowcodes[k >> 1] >> ((k & 1) * 4)) & 15);
            d = u - z;
        }
        dst[i] = bf16_of_int(d);
    }
}

/* One job: the 16 x 16 product of row tile A (tile AT) with this step's B tiles into C (tile CT), stored to
 * cb. Consecutive jobs alternate the A and C registers: a tile load into a register the previous TDPBF16PS
 * still reads costs ~50 cycles against ~23 alternating (measured here), and C is stored after every job. */
#define JOB_SPLIT(CT, AT, a, cb, zero, store) do { _tile_loadd(AT, a, 64); if (zero) _tile_zero(CT); \
    _tile_dpbf16ps(CT, AT, 4); _tile_dpbf16ps(CT, AT, 5); _tile_dpbf16ps(CT, AT, 6); \
    if (store) _tile_stored(CT, cb, 64); } while (0)
#define JOB_PACKED(CT, AT, BT, a, cb, zero, store) do { _tile_loadd(AT, a, 64); if (zero) _tile_zero(CT); \
    _tile_dpbf16ps(CT, AT, BT); if (store) _tile_stored(CT, cb, 64); } while (0)

/* acc[r] += cb[r] * scale of row r (16 rows of one row tile, `valid` of them real) */
static inline void flush(const float *cb, float *acc, const float *sc, int64_t sstride, int valid) {
    for (int r = 0; r < valid; r++)
        _mm512_store_ps(acc + r * 16, _mm512_fmadd_ps(_mm512_load_ps(cb + r * 16), _mm512_set1_ps(sc[r * sstride]),
                                                      _mm512_load_ps(acc + r * 16)));
}

static int run(const float *x, const uint8_t *codes, const void *scales, int scale_f16, const uint8_t *zeros,
               float *y, int64_t out, int64_t in, int bits, int64_t group, int64_t batch, int threads) {
    const int64_t ng = in / group;
    const int64_t nsteps = (in + 31) / 32;
    const int64_t G = group % 32 == 0 ? group / 32 : nsteps;  /* steps per group (one group per row: all) */
    const int64_t rowbytes = bits == 8 ? in : in / 2;
    const int64_t stepbytes = bits == 8 ? 32 : 16;
    const int64_t fullsteps = in / 32;  /* steps with 32 real codes */
    const int packed = batch <= 5;
    const int64_t kc = bits == 8 ? KC / 2 : KC;  /* steps per block */
    const int64_t nchunks = packed ? 1 : (batch + 15) / 16;
    const int ntiles = packed ? 1 : (int)(3 * nchunks);
    const int64_t nblocks = (out + ROWS - 1) / ROWS;

    uint16_t *xs = aligned_alloc(64, (size_t)nsteps * ntiles * 1024);
    if (!xs) return 3;
    prepare_x(x, xs, in, batch, nsteps, ntiles, packed);

    /* int4 lookup tables: bf16 of (i - 8) (symmetric, index = code) or of (i - 15) (index = code - z + 15) */
    uint16_t tab_sym[32], tab_asym[32];
    for (int i = 0; i < 32; i++) {
        tab_sym[i] = bf16_of_int(i < 16 ? i - 8 : 0);
        tab_asym[i] = bf16_of_int(i < 31 ? i - 15 : 0);
    }
    int status = 0;

#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        load_config();
        uint16_t *abuf = aligned_alloc(64, KC * ROWS * 64);             /* [step - s0][row tile][16][32] bf16 */
        float *cbuf = aligned_alloc(64, 2 * 256 * sizeof(float));       /* the C tiles of two consecutive jobs */
        float *acc = aligned_alloc(64, (size_t)nchunks * ROWS * 16 * sizeof(float));  /* [chunk][row][16] */
        float *sbuf = aligned_alloc(64, (size_t)(ROWS * ng + 16) * sizeof(float));  /* fp16 scales as fp32 */
        uint32_t *zbuf = aligned_alloc(64, (size_t)(ROWS * ng + 16) * sizeof(uint32_t));  /* per (row, group) */
        const int ok = abuf && cbuf && acc && sbuf && zbuf;
        {
            const __m512i tsym = _mm512_loadu_si512(tab_sym), tasym = _mm512_loadu_si512(tab_asym);
            const __m512i nib = _mm512_set1_epi32(0x000F000F);
#pragma omp for schedule(static)
            for (int64_t blk = 0; blk < nblocks; blk++) {
                if (!ok) {  /* every thread still reaches the worksharing loop */
#pragma omp atomic write
                    status = 3;
                    continue;
                }
                const int64_t o0 = blk * ROWS;
                const int nrows = (int)(out - o0 < ROWS ? out - o0 : ROWS);
                const int nrt = (nrows + 15) / 16;
                /* scales as fp32 [r][g]; zero points as what the conversion subtracts */
                const float *sc;
                if (scale_f16) {
                    const uint16_t *s16 = (const uint16_t *)scales;
                    for (int r = 0; r < nrows; r++) {
                        const uint16_t *src = s16 + (o0 + r) * ng;
                        float *dst = sbuf + r * ng;
                        int64_t g = 0;
                        for (; g + 16 <= ng; g += 16)
                            _mm512_storeu_ps(dst + g, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + g))));
                        for (; g < ng; g++) dst[g] = f32_of_fp16(src[g]);
                    }
                    sc = sbuf;
                } else {
                    sc = (const float *)scales + o0 * ng;
                }
                if (zeros) {
                    for (int r = 0; r < nrows; r++) {
                        const uint8_t *zr = zeros + (o0 + r) * ng;
                        uint32_t *dst = zbuf + r * ng;
                        for (int64_t g = 0; g < ng; g++) {
                            if (bits == 4) {  /* the word z - 15, twice */
                                uint32_t w = (uint16_t)(zr[g] - 15);
                                dst[g] = w | (w << 16);
                            } else {  /* z as fp32 */
                                float f = (float)zr[g];
                                memcpy(&dst[g], &f, 4);
                            }
                        }
                    }
                }
                memset(acc, 0, (size_t)nchunks * ROWS * 16 * sizeof(float));

                for (int64_t s0 = 0; s0 < nsteps; s0 += kc) {
                    const int64_t s1 = s0 + kc < nsteps ? s0 + kc : nsteps;
                    /* prefetch, PFD steps ahead, the cache lines of these rows that this block first reaches */
                    if (s1 + PFD <= nsteps) {
                        const int64_t first = (s0 + PFD) * stepbytes, last = (s1 + PFD) * stepbytes - 1;
                        for (int r = 0; r < nrows; r++) {
                            const char *rp = (const char *)(codes + (o0 + r) * rowbytes);
                            for (int64_t l = (first + 63) / 64; l <= last / 64; l++)
                                _mm_prefetch(rp + l * 64, PF_HINT);
                        }
                    }
                    /* convert the A tiles */
                    int64_t gi[KC];  /* group of each step of this block (no division in the row loops) */
                    for (int64_t s = s0; s < s1; s++) gi[s - s0] = s / G;
                    for (int r = 0; r < nrt * 16; r++) {
                        uint16_t *dstbase = abuf + (r >> 4) * 512 + (r & 15) * 32;
                        const int64_t sstep = ROWS * 32;  /* uint16 per step in abuf */
                        if (r >= nrows) {
                            for (int64_t s = s0; s < s1; s++)
                                _mm512_store_si512(dstbase + (s - s0) * sstep, _mm512_setzero_si512());
                            continue;
                        }
                        const uint8_t *rc = codes + (o0 + r) * rowbytes;
                        const int64_t sfull = s1 < fullsteps ? s1 : fullsteps;
                        if (bits == 4) {
                            if (zeros) {
                                const uint32_t *zr = zbuf + r * ng;
                                for (int64_t s = s0; s < sfull; s++) {
                                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(rc + s * 16)));
                                    __m512i w = _mm512_ternarylogic_epi32(v, _mm512_slli_epi32(v, 12), nib, 0xA8);
                                    w = _mm512_sub_epi16(w, _mm512_set1_epi32((int)zr[gi[s - s0]]));
                                    _mm512_store_si512(dstbase + (s - s0) * sstep, _mm512_permutexvar_epi16(w, tasym));
                                }
                            } else {
                                for (int64_t s = s0; s < sfull; s++) {
                                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(rc + s * 16)));
                                    __m512i w = _mm512_ternarylogic_epi32(v, _mm512_slli_epi32(v, 12), nib, 0xA8);
                                    _mm512_store_si512(dstbase + (s - s0) * sstep, _mm512_permutexvar_epi16(w, tsym));
                                }
                            }
                        } else {
                            const float *zr = (const float *)(zbuf + r * ng);
                            if (zeros) {
                                for (int64_t s = s0; s < sfull; s++) {
                                    __m512 zf = _mm512_set1_ps(zr[gi[s - s0]]);
                                    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(rc + s * 32))));
                                    __m512 b = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(rc + s * 32 + 16))));
                                    __m512bh h = _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, zf), _mm512_sub_ps(a, zf));
                                    _mm512_store_si512(dstbase + (s - s0) * sstep, (__m512i)h);
                                }
                            } else {  /* u - 128 is the byte with its top bit flipped, read as signed */
                                const __m256i flip = _mm256_set1_epi8((char)0x80);
                                for (int64_t s = s0; s < sfull; s++) {
                                    __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(rc + s * 32)), flip);
                                    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(v)));
                                    __m512 b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(v, 1)));
                                    _mm512_store_si512(dstbase + (s - s0) * sstep, (__m512i)_mm512_cvtne2ps_pbh(b, a));
                                }
                            }
                        }
                        for (int64_t s = sfull; s < s1; s++) {  /* the partial last step (one group per row) */
                            int z = zeros ? zeros[(o0 + r) * ng + gi[s - s0]] : (1 << (bits - 1));
                            convert_tail(rc, s * 32, in, bits, z, dstbase + (s - s0) * sstep);
                        }
                    }
                    /* per batch chunk and step: load B once, run every row tile against it, and fold each
                     * stored C into acc with the group's scales one job later (so the vector FMAs overlap
                     * the next job's tile work). The A tiles of the block stay in L1 across the chunks. */
                    for (int64_t c = 0; c < nchunks; c++) {
                        for (int64_t s = s0; s < s1; s++) {
                            const int64_t g = gi[s - s0];
                            /* with at most 2 row tiles each row tile owns its C register, so C accumulates
                             * over the steps of a group inside the block (zeroed at the group's first step,
                             * stored and folded at its last or at the block end) */
                            const int keep = ROWS <= 32;
                            const int zero = !keep || s == s0 || gi[s - s0 - 1] != g;
                            const int store = !keep || s + 1 == s1 || gi[s - s0 + 1] != g;
                            const uint16_t *ablk = abuf + (s - s0) * ROWS * 32;
                            const uint16_t *xt = xs + (s * ntiles + 3 * c) * 512;
                            float *ac = acc + c * ROWS * 16;
                            const int breg = (int)(s & 1);
                            if (!packed) {
                                _tile_loadd(4, xt, 64);
                                _tile_loadd(5, xt + 512, 64);
                                _tile_loadd(6, xt + 1024, 64);
                            } else if (breg) {
                                _tile_loadd(5, xt, 64);
                            } else {
                                _tile_loadd(4, xt, 64);
                            }
                            for (int rt = 0; rt < nrt; rt++) {
                                const uint16_t *a = ablk + rt * 512;
                                float *cb = cbuf + (rt & 1) * 256;
                                if (!packed) {
                                    if (rt & 1) JOB_SPLIT(1, 3, a, cb, zero, store); else JOB_SPLIT(0, 2, a, cb, zero, store);
                                } else if (breg) {
                                    if (rt & 1) JOB_PACKED(1, 3, 5, a, cb, zero, store); else JOB_PACKED(0, 2, 5, a, cb, zero, store);
                                } else {
                                    if (rt & 1) JOB_PACKED(1, 3, 4, a, cb, zero, store); else JOB_PACKED(0, 2, 4, a, cb, zero, store);
                                }
                                if (store && rt > 0) {
                                    const int p = rt - 1, valid = nrows - p * 16 < 16 ? nrows - p * 16 : 16;
                                    flush(cbuf + (p & 1) * 256, ac + p * 256, sc + p * 16 * ng + g, ng, valid);
                                }
                            }
                            if (store) {
                                const int p = nrt - 1, valid = nrows - p * 16 < 16 ? nrows - p * 16 : 16;
                                flush(cbuf + (p & 1) * 256, ac + p * 256, sc + p * 16 * ng + g, ng, valid);
                            }
                        }
                    }
                }
                /* write y (batch, out) */
                if (packed) {
                    for (int64_t b = 0; b < batch; b++)
                        for (int r = 0; r < nrows; r++) {
                            const float *a = acc + r * 16;
                            y[b * out + o0 + r] = (a[b] + a[batch + b]) + a[2 * batch + b];
                        }
                } else {
                    for (int64_t b = 0; b < batch; b++) {
                        const float *a = acc + (b >> 4) * ROWS * 16 + (b & 15);
                        for (int r = 0; r < nrows; r++) y[b * out + o0 + r] = a[r * 16];
                    }
                }
            }
        }
        _tile_release();
        free(abuf); free(cbuf); free(acc); free(sbuf); free(zbuf);
    }
    free(xs);
    return status;
}
#endif

/* Same arguments as quant_gemm_f32 (quant_cpu.c). Returns 0, 1 (no AMX: not built or permission refused),
 * 2 (unsupported format) or 3 (out of memory). */
int qamx_gemm_f32(const float *x, const uint8_t *codes, const void *scales, int scale_f16, const uint8_t *zeros,
                  float *y, int64_t out, int64_t in, int bits, int64_t group, int64_t batch, int threads) {
#ifdef QAMX
    if (qamx_init() != 0) return 1;
    if ((bits != 4 && bits != 8) || group <= 0 || in % group || (group % 32 && group != in)) return 2;
    if (batch <= 0 || out <= 0) return 0;
    return run(x, codes, scales, scale_f16, zeros, y, out, in, bits, group, batch, threads < 1 ? 1 : threads);
#else
    (void)x; (void)codes; (void)scales; (void)scale_f16; (void)zeros; (void)y; (void)out; (void)in;
    (void)bits; (void)group; (void)batch; (void)threads;
    return 1;
#endif
}
