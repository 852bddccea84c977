/* HF's gates and Eq. 7 in one call, for float32 inference on the CPU (loaded by hf_fused.py).
 *
 * Inputs: the block output as a list of channel parts (a block's branches, or one tensor), T, the gate.
 * Phase 0 computes the gate's 18 per-tap maps, one (18 x C) matrix product over the features.
 * Phase 1 sums each 3x3 window of the maps into the gate pre-activation and applies tanh:
 *     z_t(y, x) = B + sum_{i,j} m_{3i+j}(t, y+i-1, x+j-1) + sum_{i,j} m_{9+3i+j}(t+1, y+i-1, x+j-1)
 *     G-_t = tanh(z_t), G-_{T-1} = 0                           (zero padding in space and after frame T-1)
 * Phase 2 writes F_t = (1 - G+_t) * F+_t + G-_t * F+_{t+1} (Eq. 7; G+_t = G_out-_{t-1}) for every part
 * straight into its channel slice of the output: one read of the features and one write, which is what
 * the concatenation alone costs (F+_{t+1} is read twice, the second time mostly from cache).
 *
 * Layouts: "channels_last" = (N*T, H*W, C) rows with C contiguous; otherwise (N*T, C, H*W) with H*W
 * contiguous ("planar"). The caller checks them.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef int64_t i64;

/* Sum of the 9 taps k0 .. k0+8 of one frame's maps around pixel (y, x), zero outside the map. */
static inline float window_sum(const float *m, i64 sk, i64 sp, i64 h, i64 w, i64 y, i64 x, int k0) {
    float s = 0.0f;
    for (int i = 0; i < 3; i++) {
        i64 yy = y + i - 1;
        if (yy < 0 || yy >= h) continue;
        for (int j = 0; j < 3; j++) {
            i64 xx = x + j - 1;
            if (xx < 0 || xx >= w) continue;
            s += m[(k0 + 3 * i + j) * sk + (yy * w + xx) * sp];
        }
    }
    return s;
}


/* Eight floats, loaded and stored at any alignment (GCC/Clang vector extension: AVX on x86-64 with
 * -march=native, NEON or scalar code elsewhere). */
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
static inline v8 load8(const float *p) { return *(const v8u *)p; }
static inline void store8(float *p, v8 v) { *(v8u *)p = v; }

/* How many channel rows ahead the GEMMs prefetch: the rows of one pixel block are a strided stream
 * that the hardware prefetcher alone does not keep ahead of (measured: 1.5-2.5x faster with it). */
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 16
#endif

/* Phase 0, (N*T, C, H*W) parts: maps (N*T, 18, H*W) = W^T (18 x C) @ X per frame. wt is (C, 18) (tap
 * k = dt*9 + 3i + j of channel c at wt[18c + k]). Tasks are (frame, 16 pixels); each computes its 18 maps
 * in three register blocks of 6 taps x 16 pixels, reading the 16-pixel column of every channel (from
 * memory in the first block, from L1/L2 in the other two). No packing copy of X, unlike a BLAS call with
 * 18 output rows. The last block of a row is shifted left to end at the row's end (it recomputes a few
 * pixels of its neighbour and stores only its own). */
static void maps_planar(i64 nt_total, i64 hw, int nparts, const float *const *parts, const i64 *part_c,
                        const float *wt, float *maps) {
    i64 blocks = (hw + 15) / 16;
    #pragma omp for collapse(2) schedule(static)
    for (i64 nt = 0; nt < nt_total; nt++) {
        for (i64 blk = 0; blk < blocks; blk++) {
            i64 p0 = blk * 16, skip = 0;
            if (hw < 16) {  /* a map smaller than one block: plain loops */
                for (int k = 0; k < 18; k++) {
                    float acc[16] = {0};
                    const float *w = wt + k;
                    for (int q = 0; q < nparts; q++) {
                        const float *x = parts[q] + nt * part_c[q] * hw;
                        for (i64 c = 0; c < part_c[q]; c++, x += hw, w += 18)
                            for (i64 p = 0; p < hw; p++) acc[p] += *w * x[p];
                    }
                    for (i64 p = 0; p < hw; p++) maps[(nt * 18 + k) * hw + p] = acc[p];
                }
                continue;
            }
            if (p0 + 16 > hw) {
                skip = p0 + 16 - hw;
                p0 = hw - 16;
            }
            float *dst = maps + nt * 18 * hw + p0;
            for (int kg = 0; kg < 18; kg += 6) {
                v8 acc[6][2];
                for (int k = 0; k < 6; k++) acc[k][0] = acc[k][1] = (v8){0};
                const float *w = wt + kg;
                for (int q = 0; q < nparts; q++) {
                    const float *x = parts[q] + nt * part_c[q] * hw + p0;
                    const float *end = parts[q] + (nt + 1) * part_c[q] * hw;
                    for (i64 c = 0; c < part_c[q]; c++, x += hw, w += 18) {
                        if (kg == 0 && x + PREFETCH_ROWS * hw < end) {
                            __builtin_prefetch(x + PREFETCH_ROWS * hw);
                            __builtin_prefetch(x + PREFETCH_ROWS * hw + 15);
                        }
                        v8 x0 = load8(x), x1 = load8(x + 8);
                        for (int k = 0; k < 6; k++) {
                            acc[k][0] += w[k] * x0;
                            acc[k][1] += w[k] * x1;
                        }
                    }
                }
                for (int k = 0; k < 6; k++) {
                    float *row = dst + (kg + k) * hw;
                    if (skip == 0) {
                        store8(row, acc[k][0]);
                        store8(row + 8, acc[k][1]);
                    } else {
                        for (i64 p = skip; p < 16; p++) row[p] = p < 8 ? acc[k][0][p] : acc[k][1][p - 8];
                    }
                }
            }
        }
    }
}

/* Phase 0, channels_last parts: maps (N*T*H*W, 18) = X @ W. wt is (C, 24): taps 0-15 of channel c, then
 * (tap 16, tap 17) repeated four times. Tasks are 4 pixels; per channel, each pixel's value is broadcast
 * against taps 0-15 (two vectors), and the four pixels' values, paired, against the repeated taps 16-17
 * (one vector for all four): 9 vector products per channel instead of 12 with three zero-padded vectors
 * per pixel (measured ~25 % faster). The 4 pixel rows are contiguous streams; the next block's rows are
 * prefetched. A last block of fewer than 4 pixels repeats its last pixel and stores only its own. */
static void maps_channels_last(i64 pixels, int nparts, const float *const *parts, const i64 *part_c,
                               const float *wt, float *maps) {
    i64 blocks = (pixels + 3) / 4;
    #pragma omp for schedule(static)
    for (i64 blk = 0; blk < blocks; blk++) {
        i64 p0 = blk * 4, rows = pixels - p0 < 4 ? pixels - p0 : 4;
        v8 acc[4][2], pair = (v8){0};
        for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = (v8){0};
        const float *w = wt;
        for (int q = 0; q < nparts; q++) {
            i64 cq = part_c[q];
            const float *x0 = parts[q] + p0 * cq;
            const float *x1 = x0 + (rows > 1 ? cq : 0), *x2 = x0 + (rows > 2 ? 2 : rows - 1) * cq;
            const float *x3 = x0 + (rows - 1) * cq;
            int ahead = p0 + 8 <= pixels;
            for (i64 c = 0; c < cq; c++, w += 24) {
                if (ahead && (c & 15) == 0)
                    for (int r = 4; r < 8; r++) __builtin_prefetch(x0 + r * cq + c);
                v8 w0 = load8(w), w1 = load8(w + 8), w2 = load8(w + 16);
                float a = x0[c], b = x1[c], d = x2[c], e = x3[c];
                acc[0][0] += a * w0;
                acc[0][1] += a * w1;
                acc[1][0] += b * w0;
                acc[1][1] += b * w1;
                acc[2][0] += d * w0;
                acc[2][1] += d * w1;
                acc[3][0] += e * w0;
                acc[3][1] += e * w1;
                pair += (v8){a, a, b, b, d, d, e, e} * w2;
            }
        }
        for (int r = 0; r < rows; r++) {
            float *dst = maps + (p0 + r) * 18;
            store8(dst, acc[r][0]);
            store8(dst + 8, acc[r][1]);
            dst[16] = pair[2 * r];
            dst[17] = pair[2 * r + 1];
        }
    }
}

/* Phase 1 for one gate: g (N*T, H*W) contiguous. */
static void gate_rows(const float *maps, i64 sk, i64 snt, i64 sp, float bias, float *g, i64 nt_total,
                      i64 t_len, i64 h, i64 w) {
    #pragma omp for collapse(2) schedule(static)
    for (i64 nt = 0; nt < nt_total; nt++) {
        for (i64 y = 0; y < h; y++) {
            float *row = g + nt * h * w + y * w;
            if (nt % t_len == t_len - 1) {  /* the last frame has no successor: no transfer */
                for (i64 x = 0; x < w; x++) row[x] = 0.0f;
                continue;
            }
            const float *m0 = maps + nt * snt, *m1 = maps + (nt + 1) * snt;
            for (i64 x = 0; x < w; x++) {
                float z = bias + window_sum(m0, sk, sp, h, w, y, x, 0) + window_sum(m1, sk, sp, h, w, y, x, 9);
                row[x] = tanhf(z);
            }
        }
    }
}

/* dst = ka * a + kb * b (b == NULL: dst = ka * a) over n floats; no aliasing, so it vectorizes plainly. */
static inline void axpby(float *restrict dst, const float *restrict a, const float *restrict b, float ka,
                         float kb, i64 n) {
    if (b)
        for (i64 k = 0; k < n; k++) dst[k] = ka * a[k] + kb * b[k];
    else
        for (i64 k = 0; k < n; k++) dst[k] = ka * a[k];
}

/* Eq. 7 for channels_last parts: tasks are pixels of every frame, in memory order - the access pattern of
 * the concatenation itself (measured faster than blocking pixels to reuse frame t+1's rows from cache). */
static void eq7_channels_last(i64 n, i64 t_len, i64 hw, const float *g, const float *go, int nparts,
                              const float *const *parts, const i64 *part_c, float *out, i64 c_total) {
    #pragma omp for collapse(2) schedule(static)
    for (i64 nt = 0; nt < n * t_len; nt++) {
        for (i64 p = 0; p < hw; p++) {
            i64 t = nt % t_len;
            float keep = t > 0 ? 1.0f - go[(nt - 1) * hw + p] : 1.0f;
            float gate = g[nt * hw + p];
            float *dst = out + (nt * hw + p) * c_total;
            for (int q = 0; q < nparts; q++) {
                i64 c = part_c[q];
                const float *src = parts[q] + (nt * hw + p) * c;
                axpby(dst, src, t + 1 < t_len ? src + hw * c : 0, keep, gate, c);
                dst += c;
            }
        }
    }
}

/* One planar row of Eq. 7: dst = (1 - lost) * src + gate * nxt, with lost == NULL for the first frame
 * (nothing was given away before it) and nxt == NULL for the last (no successor). */
static inline void eq7_row(float *restrict dst, const float *restrict src, const float *restrict nxt,
                           const float *restrict gate, const float *restrict lost, i64 hw) {
    if (nxt && lost)
        for (i64 p = 0; p < hw; p++) dst[p] = (1.0f - lost[p]) * src[p] + gate[p] * nxt[p];
    else if (nxt)
        for (i64 p = 0; p < hw; p++) dst[p] = src[p] + gate[p] * nxt[p];
    else if (lost)
        for (i64 p = 0; p < hw; p++) dst[p] = (1.0f - lost[p]) * src[p];
    else
        for (i64 p = 0; p < hw; p++) dst[p] = src[p];
}

/* Eq. 7 for (N*T, C, H*W) parts: tasks are (clip, output channel); each walks its frames and pixels. */
static void eq7_planar(i64 n, i64 t_len, i64 hw, const float *g, const float *go,
                       const float *const *parts, const i64 *part_c, float *out, i64 c_total) {
    #pragma omp for collapse(2) schedule(static)
    for (i64 b = 0; b < n; b++) {
        for (i64 co = 0; co < c_total; co++) {
            int q = 0;
            i64 c = co;
            while (c >= part_c[q]) c -= part_c[q++];
            i64 cq = part_c[q];
            for (i64 t = 0; t < t_len; t++) {
                i64 nt = b * t_len + t;
                const float *src = parts[q] + (nt * cq + c) * hw;
                float *dst = out + (nt * c_total + co) * hw;
                eq7_row(dst, src, t + 1 < t_len ? src + cq * hw : 0, g + nt * hw, t > 0 ? go + (nt - 1) * hw : 0,
                        hw);
            }
        }
    }
}

/* The whole HF forward of one block. parts: the block output's channel parts (N*T, C_q, H, W) in one
 * layout (channels_last != 0: NHWC memory). wt: the gate weight as (C, 18) (planar) or (C, 24)
 * (channels_last, see maps_channels_last); g: G- out, (N*T, H*W); out: the (N*T, C, H, W) result in the
 * parts' layout. wt_out / g_out: the non-conservative ablation's second gate (NULL for the paper's HF).
 * Returns 0, 1 for invalid sizes, 3 if the scratch for the maps (18 floats per pixel) cannot be had. */
int hf_fused_forward(i64 n, i64 t_len, i64 h, i64 w, int nparts, const float *const *parts, const i64 *part_c,
                     const float *wt, const float *wt_out, float bias, float bias_out, float *g, float *g_out,
                     float *out, int channels_last, int threads) {
    if (n <= 0 || t_len <= 0 || h <= 0 || w <= 0 || nparts <= 0) return 1;
    i64 c_total = 0;
    for (int q = 0; q < nparts; q++) {
        if (part_c[q] <= 0) return 1;
        c_total += part_c[q];
    }
    i64 nt_total = n * t_len, hw = h * w;
    /* the maps: (N*T, 18, H*W) planar, (N*T*H*W, 18) channels_last; element strides tap, frame, pixel */
    i64 sk = channels_last ? 1 : hw, snt = 18 * hw, sp = channels_last ? 18 : 1;
    size_t count = (size_t)(nt_total * 18 * hw);
    float *maps = malloc(count * sizeof(float)), *maps_out = wt_out ? malloc(count * sizeof(float)) : 0;
    if (!maps || (wt_out && !maps_out)) {
        free(maps);
        free(maps_out);
        return 3;
    }
    const float *go = wt_out ? g_out : g;
    #pragma omp parallel num_threads(threads > 0 ? threads : 1)
    {
        if (channels_last) {
            maps_channels_last(nt_total * hw, nparts, parts, part_c, wt, maps);
            if (wt_out) maps_channels_last(nt_total * hw, nparts, parts, part_c, wt_out, maps_out);
        } else {
            maps_planar(nt_total, hw, nparts, parts, part_c, wt, maps);
            if (wt_out) maps_planar(nt_total, hw, nparts, parts, part_c, wt_out, maps_out);
        }
        gate_rows(maps, sk, snt, sp, bias, g, nt_total, t_len, h, w);
        if (wt_out) gate_rows(maps_out, sk, snt, sp, bias_out, g_out, nt_total, t_len, h, w);
        /* the implicit barrier after each omp for: every map, then every gate is ready before it is read */
        if (channels_last)
            eq7_channels_last(n, t_len, hw, g, go, nparts, parts, part_c, out, c_total);
        else
            eq7_planar(n, t_len, hw, g, go, parts, part_c, out, c_total);
    }
    free(maps);
    free(maps_out);
    return 0;
}
