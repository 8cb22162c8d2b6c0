/* The CPU kernel of seq_loss_util's CTC loss (Graves et al. 2006), in C.
 *
 * Compiled twice by cpu.py, once per floating type: REAL, SFX, EXP and LOG are
 * defined before this text (float/f32/expf/logf, double/f64/exp/log). Every function
 * works on the examples b0 <= b < b1 of a batch, so Python can split a batch over
 * threads. The recursion is the same as seq_loss_util's PyTorch backend: log alpha
 * normalised per frame (its largest state 0), beta recomputed frame by frame in
 * backward, the gradient written straight into (B, T, C).
 */
/* POSIX for sched_yield (ctc_beam.c's stream), under -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SFX)
#define NEG_INF (-(REAL)INFINITY)

/* Zeroes n values at p. An empty tensor's data pointer is NULL (a batch of 0 frames),
 * and memset(NULL, 0, 0) is undefined behaviour, so n == 0 touches nothing. */
static inline void FN(zero)(REAL *p, int64_t n) {
    if (n > 0) memset(p, 0, sizeof(REAL) * n);
}

/* float exp and log inline, so that the loops over states that call them are vector
 * code (libm's are calls, one value each). cpu.py makes them EXP and LOG of the float
 * variant; the double variant keeps libm's. Both within 1 ulp of the correctly rounded
 * value: exp over [-87, 88] (0 below -87.34, -inf included; NaN for NaN), log over
 * the positive normal floats (log 0 = -inf), checked by tests/test_vector_math.py
 * against float64 libm. What they get here: exp of log-probabilities and of
 * differences to a maximum (<= 0), log of sums of such exps (0, or >= 1): each edge
 * case handled costs a select per value in the hottest loops, so only those are. */
#ifndef CTC_VECTOR_MATH
#define CTC_VECTOR_MATH
static inline __attribute__((unused)) float ctc_vexpf(float x) {
    /* exp(x) = 2^n exp(r): n = round(x log2 e), r = x - n ln 2 in two parts (Cody and
     * Waite), exp(r) by Cephes' degree-6 polynomial on |r| <= ln2 / 2. x is clamped to
     * [lo, hi] (n in [-126, 127]); n's bits are read off the rounding sum and 2^n built
     * in unsigned arithmetic, so a NaN (which passes the clamps, and comes out NaN) is
     * never converted to an integer (undefined behaviour in C). Below lo the result is
     * 0 (-inf included); above hi it is exp(hi), outside what the recursions pass. */
    const float lo = -87.33654475f, hi = 88.0f;
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    const float shifter = 12582912.0f;  /* 1.5 * 2^23: adding it rounds to an integer */
    const float nf = xc * 1.44269504088896341f + shifter;
    uint32_t nbits;
    memcpy(&nbits, &nf, sizeof nbits);  /* 0x4b400000 + n */
    const float n = nf - shifter;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    const uint32_t bits = (nbits - 0x4b400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    y = y * scale;
    return x < lo ? 0.0f : y;  /* -inf, and values whose exp is not a normal float */
}
static inline __attribute__((unused)) float ctc_vlogf(float x) {
    /* For x a positive normal float: x = 2^k m with m in [sqrt(1/2), sqrt(2)), log m
     * by Cephes' polynomial in m - 1, k ln 2 in two parts. */
    int32_t i;
    memcpy(&i, &x, sizeof i);
    int32_t k = ((i >> 23) & 0xff) - 126;
    int32_t mi = (i & 0x007fffff) | 0x3f000000;  /* m in [0.5, 1) */
    float m;
    memcpy(&m, &mi, sizeof m);
    const int small = m < 0.707106781186547524f;
    k = k - small;
    float f = small ? m + m - 1.0f : m - 1.0f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = p * f * z;
    float kf = (float)k;
    y = y + kf * -2.12194440e-4f;
    y = y - 0.5f * z;
    y = f + y + kf * 0.693359375f;
    /* log 0 = -inf (a sum of exps that all underflowed). Negatives, infinities, NaN and
     * subnormals are outside what the recursions pass (sums of exps: 0, or >= 1). */
    return x == 0 ? -(float)INFINITY : y;
}
#endif

/* The largest of x[0 .. n) (-inf for none; NaN never wins), in sixteen running maxima:
 * one would chain every comparison on the last (4 cycles each), and the loops over
 * states are short enough for that to matter. */
static inline REAL FN(row_max)(const REAL *x, int64_t n) {
    REAL top[16], m = NEG_INF;
    for (int k = 0; k < 16; ++k) top[k] = NEG_INF;
    const int64_t n16 = n & ~(int64_t)15;
    for (int64_t i = 0; i < n16; i += 16)
        for (int k = 0; k < 16; ++k) top[k] = x[i + k] > top[k] ? x[i + k] : top[k];
    for (int64_t i = n16; i < n; ++i) m = x[i] > m ? x[i] : m;
    for (int k = 0; k < 16; ++k) m = top[k] > m ? top[k] : m;
    return m;
}

/* log(exp(a) + exp(b) + exp(c)) (inline, branch-free: the loops that call it are
 * vector code); -inf when all three are -inf. The largest term is exp(0) = 1, so two
 * exps, of the other two: min(a, b) and min(max(a, b), c). */
static inline REAL FN(lse3)(REAL a, REAL b, REAL c) {
    const REAL hi = a > b ? a : b, lo = a > b ? b : a;
    const REAL m = hi > c ? hi : c, mid = hi > c ? c : hi;
    const REAL y = m + LOG(1 + EXP(lo - m) + EXP(mid - m));
    return m == NEG_INF ? NEG_INF : y;
}

/* EXP and LOG of n values, as the recursions compute them: the accuracy test's entry. */
void FN(ctc_exp_log)(const REAL *x, int64_t n, REAL *ex, REAL *lg) {
    for (int64_t i = 0; i < n; ++i) {
        ex[i] = EXP(x[i]);
        lg[i] = LOG(x[i]);
    }
}

/* Forward variables (Graves et al. 2006, eq. 6-7) for examples b0 <= b < b1.
 * lp (B, T, C) log-probabilities; labels (B, L) augmented; alpha (B, T, L) receives
 * log alpha shifted per frame so that its largest state is 0; finals (B, 2) receives
 * the unnormalised log alpha of states L_b - 1 and L_b - 2 at frame T_b - 1. */
void FN(ctc_forward)(const REAL *lp, int64_t T, int64_t C, const int64_t *labels,
                     int64_t L, const int64_t *label_len, const int64_t *logit_len,
                     int64_t b0, int64_t b1, REAL *alpha, REAL *finals) {
    /* Two rows with two -inf in front (s - 1 and s - 2 need no test), a skip's 0 or
     * -inf per state and the frame's emission per state, all padded with -inf to a
     * multiple of 16 states: the loops over states are then whole vector loops, with no
     * scalar remainder (at L_b = 21 the remainder was most of a frame). Padded states
     * stay -inf, so every valid state's value is what the unpadded loop gives. */
    const int64_t W = (L + 15) & ~(int64_t)15;
    REAL *pad = (REAL *)malloc(sizeof(REAL) * (2 * (W + 2) + 2 * (W > 0 ? W : 1)));
    REAL *prev = pad + 2, *cur = pad + W + 4;
    REAL *skip_add = pad + 2 * (W + 2), *em = skip_add + (W > 0 ? W : 1);
    pad[0] = pad[1] = pad[W + 2] = pad[W + 3] = NEG_INF;
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t *l = labels + b * L;
        const int64_t Tb = logit_len[b], Lb = label_len[b];
        const int64_t Lv = (Lb + 15) & ~(int64_t)15;
        const REAL *lpb = lp + b * T * C;
        REAL *ab = alpha + b * T * L;
        double total = 0;  /* the shifts: float32 would lose ~0.1 nat over 6000 frames */
        finals[2 * b] = finals[2 * b + 1] = NEG_INF;
        if (Lb == 0) {
            for (int64_t i = 0; i < T * L; ++i) ab[i] = NEG_INF;
            continue;
        }
        for (int64_t s = 0; s < Lv; ++s) {
            skip_add[s] = (s < Lb && s >= 2 && (s & 1) && l[s] != l[s - 2]) ? 0 : NEG_INF;
            prev[s] = cur[s] = em[s] = NEG_INF;
        }
        prev[0] = 0;  /* the start vector: a virtual frame before t = 0 */
        for (int64_t t = 0; t < Tb; ++t) {
            const REAL *e = lpb + t * C;
            for (int64_t s = 0; s < Lb; ++s) em[s] = e[l[s]];
            for (int64_t s = 0; s < Lv; ++s)
                cur[s] = FN(lse3)(prev[s], prev[s - 1], prev[s - 2] + skip_add[s]) + em[s];
            const REAL m = FN(row_max)(cur, Lv);
            if (m > NEG_INF) {
                for (int64_t s = 0; s < Lv; ++s) cur[s] -= m;
                total += m;
            }
            memcpy(ab + t * L, cur, sizeof(REAL) * Lb);
            REAL *swap = prev; prev = cur; cur = swap;
        }
        /* prev: the last frame's row, or the start vector when there are no frames */
        finals[2 * b] = (REAL)(prev[Lb - 1] + total);
        if (Lb >= 2) finals[2 * b + 1] = (REAL)(prev[Lb - 2] + total);
        /* Padded states and frames hold -inf: alpha is a defined output, bit for bit. */
        for (int64_t t = 0; t < T; ++t)
            for (int64_t s = t < Tb ? Lb : 0; s < L; ++s) ab[t * L + s] = NEG_INF;
    }
    free(pad);
}

/* Gradient of the loss with respect to the logits, times scale[b] (Graves et al.
 * 2006, eq. 14-16): softmax minus the per-class posterior of the states, from alpha
 * and a backward variable that is recomputed frame by frame. grad (B, T, C) is
 * written in full for examples b0 <= b < b1: 0 on padded frames and where scale[b]
 * is 0. */
void FN(ctc_backward)(const REAL *lp, int64_t T, int64_t C, const int64_t *labels,
                      int64_t L, const int64_t *label_len, const int64_t *logit_len,
                      const REAL *alpha, const REAL *scale, int64_t b0, int64_t b1,
                      REAL *grad) {
    /* Per-state rows padded with -inf to a multiple of 16 states (and two more for s + 1
     * and s + 2), so that the loops over states are whole vector loops (ctc_forward). */
    const int64_t W = ((L + 15) & ~(int64_t)15) + 2, Cv = (C + 15) & ~(int64_t)15;
    REAL *rows = (REAL *)malloc(sizeof(REAL) * (6 * W + 2 * Cv));
    REAL *beta = rows, *next = rows + W, *skip_back = rows + 2 * W, *ab_s = rows + 3 * W;
    REAL *ex = rows + 4 * W, *em = rows + 5 * W;
    /* A frame's log-probabilities and softmax times the scale, padded to whole vectors
     * (-inf, so exp gives 0): at C = 10 the class loop was all scalar remainder. */
    REAL *lp_row = rows + 6 * W, *soft = lp_row + Cv;
    for (int64_t c = 0; c < Cv; ++c) lp_row[c] = NEG_INF;
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t *l = labels + b * L;
        const int64_t Tb = logit_len[b], Lb = label_len[b];
        const int64_t Lv = (Lb + 15) & ~(int64_t)15;
        const REAL *lpb = lp + b * T * C, *ab = alpha + b * T * L;
        const REAL sc = scale[b];
        REAL *gb = grad + b * T * C;
        if (sc == 0 || Tb == 0 || Lb == 0) {
            FN(zero)(gb, T * C);
            continue;
        }
        FN(zero)(gb + Tb * C, (T - Tb) * C);
        /* Blank-augmented labels hold the blank at every even state (the callers check
         * it); any other labels take the state-by-state scatter. */
        int blank_even = 1;
        for (int64_t s = 2; s < Lb; s += 2) blank_even &= l[s] == l[0];
        for (int64_t s = 0; s < Lv + 2; ++s) {
            beta[s] = next[s] = ab_s[s] = em[s] = NEG_INF;
            skip_back[s] = ((s & 1) && s + 2 < Lb && l[s + 2] != l[s]) ? 0 : NEG_INF;
        }
        beta[Lb - 1] = 0;
        if (Lb >= 2) beta[Lb - 2] = 0;
        for (int64_t t = Tb - 1; t >= 0; --t) {
            if (t < Tb - 1) {  /* beta over frames after t, from beta of frame t + 1 */
                const REAL *e = lpb + (t + 1) * C;
                for (int64_t s = 0; s < Lb; ++s) em[s] = e[l[s]];
                for (int64_t s = 0; s < Lv; ++s) next[s] = beta[s] + em[s];
                for (int64_t s = 0; s < Lv; ++s)
                    beta[s] = FN(lse3)(next[s], next[s + 1], next[s + 2] + skip_back[s]);
                const REAL m = FN(row_max)(beta, Lv);
                if (m > NEG_INF)
                    for (int64_t s = 0; s < Lv; ++s) beta[s] -= m;
            }
            const REAL *a = ab + t * L, *e = lpb + t * C;
            REAL sum = 0;
            /* The exps in vector loops into ex; the sum and the scatter in state order. */
            for (int64_t s = 0; s < Lb; ++s) ab_s[s] = a[s] + beta[s];
            const REAL m = FN(row_max)(ab_s, Lv);
            for (int64_t s = 0; s < Lv; ++s) ex[s] = EXP(ab_s[s] - m);
            for (int64_t s = 0; s < Lb; ++s) sum += ex[s];
            /* the posterior (eq. 14) times the scale: one exp per state, not two */
            const REAL w = sc / sum;
            REAL *g = gb + t * C;
            memcpy(lp_row, e, sizeof(REAL) * C);
            for (int64_t c = 0; c < Cv; ++c) soft[c] = EXP(lp_row[c]) * sc;
            if (blank_even) {
                /* Every even state is the blank: its posterior summed in registers and
                 * subtracted once. Subtracting it state by state chained a store and a
                 * load of the same class through memory, Lb / 2 times a frame. */
                REAL even = 0;
                for (int64_t s = 0; s < Lb; s += 2) even += ex[s];
                soft[l[0]] -= even * w;
                for (int64_t s = 1; s < Lb; s += 2) soft[l[s]] -= ex[s] * w;
            } else {
                for (int64_t s = 0; s < Lb; ++s) soft[l[s]] -= ex[s] * w;
            }
            memcpy(g, soft, sizeof(REAL) * C);
        }
    }
    free(rows);
}

/* The most probable alignment (Viterbi) for examples b0 <= b < b1. back (B, T, L)
 * receives each state's best predecessor as 0 (stay), 1 (advance) or 2 (skip); path
 * (B, T) the state at each frame, -1 past T_b or where no alignment exists; score (B,)
 * the path's log-probability (-inf where none exists). Ties prefer stay, then advance. */
void FN(ctc_viterbi)(const REAL *lp, int64_t T, int64_t C, const int64_t *labels,
                     int64_t L, const int64_t *label_len, const int64_t *logit_len,
                     int64_t b0, int64_t b1, uint8_t *back, int64_t *path, REAL *score) {
    REAL *prev = (REAL *)malloc(sizeof(REAL) * (L > 0 ? L : 1));
    REAL *cur = (REAL *)malloc(sizeof(REAL) * (L > 0 ? L : 1));
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t *l = labels + b * L;
        const int64_t Tb = logit_len[b], Lb = label_len[b];
        const REAL *lpb = lp + b * T * C;
        uint8_t *bk = back + b * T * L;
        int64_t *pb = path + b * T;
        for (int64_t t = 0; t < T; ++t) pb[t] = -1;
        score[b] = NEG_INF;
        if (Lb == 0) continue;
        for (int64_t s = 0; s < Lb; ++s) prev[s] = NEG_INF;
        prev[0] = 0;  /* the start: state 0 before the first frame (all of it if T_b == 0) */
        for (int64_t t = 0; t < Tb; ++t) {
            const REAL *e = lpb + t * C;
            for (int64_t s = 0; s < Lb; ++s) {
                REAL best = prev[s];
                uint8_t k = 0;
                if (s >= 1 && prev[s - 1] > best) { best = prev[s - 1]; k = 1; }
                if (s >= 2 && (s & 1) && l[s] != l[s - 2] && prev[s - 2] > best) { best = prev[s - 2]; k = 2; }
                cur[s] = best + e[l[s]];
                bk[t * L + s] = k;
            }
            REAL *swap = prev; prev = cur; cur = swap;
        }
        int64_t s = Lb - 1;
        if (Lb >= 2 && prev[Lb - 2] > prev[Lb - 1]) s = Lb - 2;
        if (prev[s] == NEG_INF) continue;
        score[b] = prev[s];
        for (int64_t t = Tb - 1; t >= 0; --t) {
            pb[t] = s;
            s -= bk[t * L + s];
        }
    }
    free(prev);
    free(cur);
}

/* The Viterbi recursion (Graves et al. 2006, eq. 6-7 with max for sum) of one example
 * inside a band: at frame t only states lo[t] <= s < lo[t] + W are kept (lo never
 * decreases). Frames t0 <= t < t1 are computed from rows lp[(t - t0) * C], so a long
 * recording can come in chunks: carry holds the W scores of frame t0 - 1 (band lo[t0 - 1])
 * on entry and those of frame t1 - 1 on return; for t0 == 0 it is ignored and the start
 * (state 0 before the first frame) is used. back receives 2 bits per frame and band slot,
 * rows of (W + 3) / 4 bytes from frame t0: 0 stay, 1 advance, 2 skip (into a label
 * state, odd, whose label differs from the one two before), 3 unreachable; exits (from
 * frame t0) the best score of a state at frame t - 1 that a path can leave the band
 * from at frame t (-inf at t = 0). */
void FN(ctc_viterbi_band)(const REAL *lp, int64_t t0, int64_t t1, int64_t C,
                          const int64_t *l, int64_t L, const int64_t *lo, int64_t W,
                          REAL *carry, uint8_t *back, REAL *exits) {
    /* prev sits at buf[2 .. W + 2), with two -inf before it (advance and skip from below
     * the band) and W + 2 after it (stay past its top, where the band moved by up to
     * W + 1): every read below is in range. */
    REAL *buf = (REAL *)malloc(sizeof(REAL) * (2 * W + 4));
    REAL *buf2 = (REAL *)malloc(sizeof(REAL) * (2 * W + 4));  /* cur, the same layout */
    /* skip_add[s]: 0 where a path may skip into s (a label state, odd, whose label
     * differs from the one two before), -inf where not: added, not branched on. Labels
     * as int32: a quarter less to stream per frame than int64. */
    REAL *skip_add = (REAL *)malloc(sizeof(REAL) * (L > 0 ? L : 1));
    int32_t *l32 = (int32_t *)malloc(sizeof(int32_t) * (L > 0 ? L : 1));
    for (int64_t s = 0; s < L; ++s) {
        skip_add[s] = s >= 2 && (s & 1) && l[s] != l[s - 2] ? 0 : NEG_INF;
        l32[s] = (int32_t)l[s];
    }
    uint8_t *code = (uint8_t *)malloc((size_t)W + 4);
    for (int64_t i = 0; i < 2 * W + 4; ++i) buf[i] = buf2[i] = NEG_INF;
    REAL *prev = buf + 2, *cur = buf2 + 2;  /* swapped each frame */
    int64_t row = (W + 3) / 4;
    int64_t plo = 0;
    if (t0 == 0) {
        if (W > 0) prev[0] = 0;  /* the start: state 0 before the first frame */
    } else {
        memcpy(prev, carry, sizeof(REAL) * W);
        plo = lo[t0 - 1];
    }
    for (int64_t t = t0; t < t1; ++t) {
        const REAL *e = lp + (t - t0) * C;
        const int64_t clo = lo[t], d = clo - plo;
        uint8_t *bk = back + (t - t0) * row;
        memset(bk, 0xff, row);  /* unreachable (3) past the states set below */
        /* The best score of frame t - 1 at a state from which a path can leave the band
         * at frame t: below it (s < lo[t]) or at its top (s + 1 or s + 2 past it). With
         * the best the later frames could add, it bounds every path that is outside the
         * band anywhere (the caller's certificate of exactness). */
        REAL out = NEG_INF;
        if (t > 0) {
            for (int64_t j = 0; j < (d < W ? d : W); ++j) if (prev[j] > out) out = prev[j];
            for (int64_t j = W - 2 + d; j < W; ++j)  /* s = plo + j >= lo[t] + W - 2 */
                if (j >= 0 && plo + j + 1 < L && prev[j] > out) out = prev[j];
        }
        exits[t - t0] = out;
        int64_t n = L - clo < W ? L - clo : W;
        /* Moved by W or W + 1, the band's lowest states are still reached by an advance
         * or a skip from its old top; moved further, nothing is. */
        if (d >= W + 2) n = 0;
        /* The move that wins is data, and a branch on it mispredicts: selects instead,
         * which the compiler vectorises (with -fno-trapping-math), a byte code per slot,
         * then the emissions (a gather) and four codes packed to a byte. */
        const REAL *p0 = prev + d, *p1 = prev + d - 1, *p2 = prev + d - 2;
        const REAL *sk = skip_add + clo;
        const int32_t *ls = l32 + clo;
        for (int64_t j = 0; j < n; ++j) {
            const REAL stay = p0[j], advance = p1[j], jump = p2[j] + sk[j];
            const int k1 = advance > stay;  /* ties keep the earlier move */
            const REAL b1 = k1 ? advance : stay;
            const int k2 = jump > b1;
            const REAL best = k2 ? jump : b1;
            cur[j] = best;
            code[j] = (uint8_t)(best == NEG_INF ? 3 : (k2 ? 2 : k1));
        }
        for (int64_t j = 0; j < n; ++j) cur[j] += e[ls[j]];  /* -inf stays -inf */
        for (int64_t i = n; i < ((n + 3) & ~(int64_t)3); ++i) code[i] = 3;
        for (int64_t i = 0; 4 * i < n; ++i)
            bk[i] = (uint8_t)(code[4 * i] | code[4 * i + 1] << 2 | code[4 * i + 2] << 4
                              | code[4 * i + 3] << 6);
        for (int64_t j = n; j < W; ++j) cur[j] = NEG_INF;
        REAL *swap = prev;
        prev = cur;
        cur = swap;
        plo = clo;
    }
    memcpy(carry, prev, sizeof(REAL) * W);
    free(buf);
    free(buf2);
    free(skip_add);
    free(l32);
    free(code);
}

/* The backward Viterbi of a band (Graves et al. 2006, eq. 10-11 with max for sum):
 * G_t(s), the best score of frames t..T-1 from state s at frame t (its emission
 * included) to a final state (L - 1 or L - 2) at frame T - 1, inside the band. Frames
 * t1 > t >= t0, descending, from rows lp[(t - t0) * C]; carry holds G_{t1} (band
 * lo[t1]) on entry, ignored when t1 == T, and G_{t0} on return. entries[t - t0]
 * receives the best G_t(s) over the states s a path can enter the band at from outside
 * it at frame t - 1 (s < lo[t - 1] + 2, or s past lo[t - 1] + W - 1); -inf at t = 0. */
void FN(ctc_viterbi_band_back)(const REAL *lp, int64_t t0, int64_t t1, int64_t T, int64_t C,
                               const int64_t *l, int64_t L, const int64_t *lo, int64_t W,
                               REAL *carry, REAL *entries) {
    /* next sits at buf[W + 2 .. 2W + 2), with W + 2 -inf before it (the band may move by
     * W + 1 and a skip still reach its lowest state) and 2 after it; slots of states past
     * the last hold -inf too, so the reads of s + 1 and s + 2 need no bound. */
    REAL *buf = (REAL *)malloc(sizeof(REAL) * (3 * W + 4));
    REAL *cur = (REAL *)malloc(sizeof(REAL) * (W > 0 ? W : 1));
    /* skip2[s]: a path may skip from s to s + 2 (into a label state whose label differs
     * from s's); two slots of padding past the last state. */
    uint8_t *skip2 = (uint8_t *)calloc((size_t)(L > 0 ? L : 1) + 2, 1);
    for (int64_t s = 0; s + 2 < L; ++s) skip2[s] = ((s + 2) & 1) && l[s + 2] != l[s];
    for (int64_t i = 0; i < 3 * W + 4; ++i) buf[i] = NEG_INF;
    REAL *next = buf + W + 2;
    if (t1 < T) memcpy(next, carry, sizeof(REAL) * W);
    for (int64_t t = t1 - 1; t >= t0; --t) {
        const REAL *e = lp + (t - t0) * C;
        const int64_t clo = lo[t];
        const int64_t n = L - clo < W ? (L - clo > 0 ? L - clo : 0) : W;
        if (t == T - 1) {
            for (int64_t j = 0; j < n; ++j) {
                int64_t s = clo + j;
                cur[j] = (s == L - 1 || s == L - 2) ? e[l[s]] : NEG_INF;
            }
        } else {
            /* s's slot in the band of frame t + 1 is j - d; below -W - 2, neither s nor
             * the two after it are in that band. */
            const int64_t d = lo[t + 1] - clo;
            const int64_t j0 = d - W - 2 > 0 ? (d - W - 2 < n ? d - W - 2 : n) : 0;
            for (int64_t j = 0; j < j0; ++j) cur[j] = NEG_INF;
            for (int64_t j = j0; j < n; ++j) {
                const int64_t s = clo + j;
                const REAL *q = next + (j - d);
                REAL best = q[0];
                if (q[1] > best) best = q[1];
                if (skip2[s] && q[2] > best) best = q[2];
                cur[j] = best + e[l[s]];  /* -inf stays -inf */
            }
        }
        for (int64_t j = n; j < W; ++j) cur[j] = NEG_INF;
        /* Entry states: s < lo[t - 1] + 2 or s > lo[t - 1] + W - 1, two short runs. */
        REAL in = NEG_INF;
        if (t > 0) {
            const int64_t plo = lo[t - 1];
            const int64_t low = plo + 2 - clo < n ? plo + 2 - clo : n;
            for (int64_t j = 0; j < low; ++j) if (cur[j] > in) in = cur[j];
            for (int64_t j = plo + W - clo > 0 ? plo + W - clo : 0; j < n; ++j)
                if (cur[j] > in) in = cur[j];
        }
        entries[t - t0] = in;
        memcpy(next, cur, sizeof(REAL) * W);
    }
    memcpy(carry, next, sizeof(REAL) * W);
    free(buf);
    free(cur);
    free(skip2);
}

/* The path back from state `end` at frame T - 1 through a band's 2-bit back-pointers
 * (ctc_viterbi_band's, all T frames): path (T,) the state at each frame. Returns 0, or
 * -1 where a pointer says unreachable (the band lost the path). */
int FN(ctc_band_backtrace)(const uint8_t *back, int64_t T, const int64_t *lo, int64_t W,
                           int64_t end, int64_t *path) {
    int64_t row = (W + 3) / 4, s = end;
    for (int64_t t = T - 1; t >= 0; --t) {
        int64_t j = s - lo[t];
        if (j < 0 || j >= W) return -1;
        uint8_t k = (back[t * row + (j >> 2)] >> ((j & 3) * 2)) & 3;
        if (k == 3) return -1;
        path[t] = s;
        s -= k;
    }
    return 0;
}

/* ---- The glue around the recursions: CtcLossModule's label preparation and checks,
 * the log-softmax and the loss (what triton_wrapper.py's kernels do on a GPU), so a
 * training step on CPU is these calls and the recursions, not ~80 small ATen ops. The
 * verdict bits are verdict.py's. */
enum { V_GAP = 1, V_LABELS_LEN = 2, V_LOGITS_LEN = 4, V_BAD_ID = 8, V_NOT_PROBABILITIES = 16,
       V_INFEASIBLE = 32, V_EVEN_LENGTH = 64, V_NOT_AUGMENTED = 128 };

/* Whether an example's first frame (C scores, stride sxc) has a negative or NaN score:
 * logits and log-probabilities almost always do; where no example does, the general
 * path looks at every frame for probabilities passed as logits. */
static inline int FN(first_frame_negative)(const REAL *x, int64_t sxc, int64_t C) {
    int negative = 0;
    for (int64_t c = 0; c < C; ++c) negative |= x[c * sxc] < 0 || x[c * sxc] != x[c * sxc];
    return negative;
}

/* CtcLossModule's raw labels (B, U) (negative ids pad them, or labels_len cuts them;
 * NULL for none) to blank-augmented labels aug (B, 2U + 1) (0 past 2 n + 1) and aug_len,
 * the frames (logits_len clamped to [0, T], or T), the loss normaliser max(n, 1), and
 * every check as bits OR-ed into *verdict. logits: any strides, only each example's
 * first frame is read (whether it has a negative or NaN score). */
void FN(ctc_prepare)(const int64_t *labels, int64_t slb, int64_t slu, const int64_t *labels_len,
                     const REAL *logits, int64_t sxb, int64_t sxc, const int64_t *logits_len,
                     int64_t B, int64_t U, int64_t T, int64_t C, int64_t blank, int64_t shift,
                     int64_t *aug, int64_t *aug_len, int64_t *frames, float *norm,
                     int32_t *verdict) {
    int32_t all = 0;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t *row = labels + b * slb;
        int32_t bits = 0;
        int64_t n = 0;
        if (labels_len) {
            n = labels_len[b];
            if (n < 0 || n > U) bits |= V_LABELS_LEN;
            n = n < 0 ? 0 : (n > U ? U : n);
        } else {
            for (int64_t u = 0; u < U; ++u) n += row[u * slu] >= 0;
            for (int64_t u = 0; u < U; ++u)
                if ((row[u * slu] >= 0) != (u < n)) bits |= V_GAP;
        }
        int64_t repeats = 0;
        for (int64_t u = 0; u < n; ++u) {
            const int64_t id = row[u * slu];
            if (shift ? (id < 0 || id >= C - 1) : (id < 0 || id >= C || id == blank))
                bits |= V_BAD_ID;
            if (u >= 1 && id == row[(u - 1) * slu]) ++repeats;
        }
        int64_t n_frames = T;
        if (logits_len) {
            n_frames = logits_len[b];
            if (n_frames < 0 || n_frames > T) bits |= V_LOGITS_LEN;
            n_frames = n_frames < 0 ? 0 : (n_frames > T ? T : n_frames);
        }
        if (n_frames < n + repeats) bits |= V_INFEASIBLE;
        if (T == 0 || (n_frames > 0 && FN(first_frame_negative)(logits + b * sxb, sxc, C)))
            bits |= V_NOT_PROBABILITIES;
        all |= bits;
        int64_t *a = aug + b * (2 * U + 1);
        for (int64_t j = 0; j < 2 * U + 1; ++j) {
            if (j >= 2 * n + 1) {
                a[j] = 0;
            } else if (j & 1) {
                int64_t id = row[((j - 1) / 2) * slu];
                a[j] = shift ? id + (id >= blank) : id;  /* the original's convention */
            } else {
                a[j] = blank;
            }
        }
        aug_len[b] = 2 * n + 1;
        frames[b] = n_frames;
        norm[b] = (float)(n > 1 ? n : 1);
    }
    *verdict |= all;
}

/* ctc_loss's checks of its blank-augmented labels (B, L), as verdict bits: lengths
 * within their axes and each labels_len odd, ids in [0, C), the blank (example 0's
 * first id) at every even position and at no odd one, a negative (or NaN) score in some
 * example's first frame, and whether an example has fewer frames than U + adjacent
 * repeats. One pass over what the general path's ATen checks read; any fault bit sends
 * the call to them, which name it. */
void FN(ctc_check_augmented)(const int64_t *labels, int64_t slb, int64_t slu,
                             const int64_t *labels_len, const REAL *logits, int64_t sxb,
                             int64_t sxc, const int64_t *logits_len, int64_t B, int64_t L,
                             int64_t T, int64_t C, int32_t *verdict) {
    int32_t all = T == 0 ? V_NOT_PROBABILITIES : 0;
    const int64_t blank = L > 0 ? labels[0] : 0;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t *row = labels + b * slb;
        int32_t bits = 0;
        int64_t n = labels_len[b];
        if (n < 0 || n > L) bits |= V_LABELS_LEN;
        if (n % 2 == 0) bits |= V_EVEN_LENGTH;
        n = n < 0 ? 0 : (n > L ? L : n);
        int64_t repeats = 0;
        for (int64_t j = 0; j < n; ++j) {
            const int64_t id = row[j * slu];
            if (id < 0 || id >= C) bits |= V_BAD_ID;
            if ((id == blank) != (j % 2 == 0)) bits |= V_NOT_AUGMENTED;
            if (j >= 2 && (j & 1) && id == row[(j - 2) * slu]) ++repeats;
        }
        const int64_t n_frames = logits_len[b];
        if (n_frames < 0 || n_frames > T) bits |= V_LOGITS_LEN;
        if (n_frames < (labels_len[b] - 1) / 2 + repeats) bits |= V_INFEASIBLE;
        if (n_frames > 0 && n_frames <= T && FN(first_frame_negative)(logits + b * sxb, sxc, C))
            bits |= V_NOT_PROBABILITIES;
        all |= bits;
    }
    *verdict = all;
}

/* log_softmax of logits x (B, T, C) over classes into lp, and bad (B, T) as
 * ctc_bad_frames writes it, rows b0 <= b < b1, in one pass: at small batches torch's
 * log_softmax and a separate scan were most of a step's fixed cost. The sum of exps in
 * 16 running sums (a vector loop; a fixed order, so reproducible). A NaN or +inf logit,
 * or a row of -inf, gives a row of NaN, as torch's does (and a bad frame). */
static void FN(log_softmax_rows)(const REAL *x, int64_t T, int64_t C, const int64_t *frames,
                                 int64_t b0, int64_t b1, REAL *lp, uint8_t *bad) {
    const int64_t C16 = C & ~(int64_t)15;
    for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = 0; t < T; ++t) {
            const REAL *row = x + (b * T + t) * C;
            REAL *out = lp + (b * T + t) * C;
            const REAL m = FN(row_max)(row, C);
            int nan = 0;
            for (int64_t c = 0; c < C; ++c) nan |= row[c] != row[c];
            if (nan || m == (REAL)INFINITY || m == -(REAL)INFINITY) {
                /* torch's row: all NaN (no exp of a NaN difference is ever taken) */
                for (int64_t c = 0; c < C; ++c) out[c] = (REAL)NAN;
                bad[b * T + t] = (uint8_t)(C > 0 && t < frames[b]);
                continue;
            }
            REAL part[16], sum = 0;
            for (int k = 0; k < 16; ++k) part[k] = 0;
            for (int64_t c = 0; c < C16; c += 16)
                for (int k = 0; k < 16; ++k) part[k] += EXP(row[c + k] - m);
            for (int64_t c = C16; c < C; ++c) sum += EXP(row[c] - m);
            for (int k = 0; k < 16; ++k) sum += part[k];
            /* No NaN and a finite max: the sum is in [1, C], so no output is NaN. */
            /* (x - m) - log(sum), as torch's: x - m is exact near the max (the likely
             * classes), where m + log(sum) first would round at m's magnitude. */
            const REAL lg = LOG(sum);
            for (int64_t c = 0; c < C; ++c) out[c] = (row[c] - m) - lg;
            bad[b * T + t] = 0;
        }
}

/* Rows of fewer than 32 classes, 16 rows at a time, one row a vector lane: the rows
 * are copied transposed into a (C, 16) buffer, so that the max, the sum of exps and
 * the log are vector operations with no horizontal reduction. A row at a time, such a
 * row is all scalar remainder and reduction chains (58 ns a row at C = 10). Each lane
 * sums its exps in class order. */
static void FN(log_softmax_narrow)(const REAL *x, int64_t T, int64_t C,
                                   const int64_t *frames, int64_t b0, int64_t b1, REAL *lp,
                                   uint8_t *bad) {
    REAL buf[32 * 16];
    const int64_t r1 = b1 * T;
    for (int64_t r0 = b0 * T; r0 < r1; r0 += 16) {
        const int64_t n = r1 - r0 < 16 ? r1 - r0 : 16;
        for (int64_t k = 0; k < 16; ++k)
            for (int64_t c = 0; c < C; ++c)
                buf[c * 16 + k] = k < n ? x[(r0 + k) * C + c] : 0;
        REAL m[16], sum[16], lg[16];
        int nan[16];
        for (int k = 0; k < 16; ++k) {
            m[k] = NEG_INF;
            sum[k] = 0;
            nan[k] = 0;
        }
        for (int64_t c = 0; c < C; ++c)
            for (int k = 0; k < 16; ++k) {
                const REAL v = buf[c * 16 + k];
                m[k] = v > m[k] ? v : m[k];
                nan[k] |= v != v;
            }
        for (int k = 0; k < 16; ++k)  /* torch's row for these: all NaN */
            nan[k] |= m[k] == (REAL)INFINITY || m[k] == NEG_INF;
        for (int64_t c = 0; c < C; ++c)
            for (int k = 0; k < 16; ++k) sum[k] += EXP(buf[c * 16 + k] - m[k]);
        /* No NaN and a finite max: the sum is in [1, C] (a lane with a NaN takes NaN). */
        for (int k = 0; k < 16; ++k) lg[k] = nan[k] ? (REAL)NAN : LOG(sum[k]);
        for (int64_t k = 0; k < n; ++k) {
            const int64_t r = r0 + k;
            for (int64_t c = 0; c < C; ++c) lp[r * C + c] = (buf[c * 16 + k] - m[k]) - lg[k];
            bad[r] = (uint8_t)(nan[k] && r % T < frames[r / T]);
        }
    }
}

/* ctc_log_softmax: log_softmax of logits x (B, T, C) over classes into lp and the bad
 * frames into bad (B, T), rows b0 <= b < b1, by the narrow or the per-row method. */
void FN(ctc_log_softmax)(const REAL *x, int64_t T, int64_t C, const int64_t *frames,
                         int64_t b0, int64_t b1, REAL *lp, uint8_t *bad) {
    if (C > 0 && C < 32)
        FN(log_softmax_narrow)(x, T, C, frames, b0, b1, lp, bad);
    else
        FN(log_softmax_rows)(x, T, C, frames, b0, b1, lp, bad);
}

/* ctc_log_softmax for the searches, example by example: example b's logits are the
 * T x C values at x + b * stride_b (so a chunk sliced from a longer tensor needs no
 * copy), its log-probabilities go to lp (B, T, C) and its bad frames to bad (B, T). A
 * row's result does not depend on which rows share its call, so these are the bits a
 * whole utterance's call gives. Returns b * T + t of the first bad frame, or -1. */
int64_t FN(ctc_log_softmax_batch)(const REAL *x, int64_t stride_b, int64_t B, int64_t T,
                                  int64_t C, const int64_t *frames, REAL *lp, uint8_t *bad) {
    int64_t first = -1;
    for (int64_t b = 0; b < B; ++b) {
        FN(ctc_log_softmax)(x + b * stride_b, T, C, frames + b, 0, 1, lp + b * T * C,
                            bad + b * T);
        for (int64_t t = 0; t < T && first < 0; ++t)
            if (bad[b * T + t]) first = b * T + t;
    }
    return first;
}

/* bad (B, T): whether each frame of the log-probabilities lp (B, T, C) is within
 * frames[b] and holds a NaN (a NaN or +inf logit, or every class -inf): what poisons an
 * example. Above ctc_log_softmax's size the log-softmax is torch's (vectorised and
 * threaded), and this scans it. Rows b0 <= b < b1. */
void FN(ctc_bad_frames)(const REAL *lp, int64_t T, int64_t C, const int64_t *frames,
                        int64_t b0, int64_t b1, uint8_t *bad) {
    for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = 0; t < T; ++t) {
            const REAL *row = lp + (b * T + t) * C;
            int nan = 0;
            for (int64_t c = 0; c < C; ++c) nan |= row[c] != row[c];
            bad[b * T + t] = (uint8_t)(nan && t < frames[b]);
        }
}

/* The loss of each example from its two final states (Graves et al. 2006, eq. 8:
 * their log-sum-exp; or the original's max, counted where T_b >= L_b), which examples
 * count, and which are poisoned (a bad frame within T_b: the loss NaN). */
void FN(ctc_finish_loss)(const REAL *finals, const uint8_t *bad, const int64_t *states,
                         const int64_t *frames, int64_t B, int64_t T, int64_t exact,
                         int64_t zero_infinity, REAL *loss, uint8_t *counted,
                         uint8_t *poisoned) {
    for (int64_t b = 0; b < B; ++b) {
        int p = 0;
        for (int64_t t = 0; t < frames[b]; ++t) p |= bad[b * T + t];
        const REAL fa = finals[2 * b], fb = finals[2 * b + 1];
        int c;
        REAL value;
        if (exact) {
            const REAL m = fa > fb ? fa : fb;
            const REAL ms = m == NEG_INF ? 0 : m;
            const REAL ll = ms + LOG(EXP(fa - ms) + EXP(fb - ms));
            c = ll == ll && ll != NEG_INF && ll != -NEG_INF && !p;
            value = c ? -ll : (zero_infinity ? 0 : -NEG_INF);
        } else {
            const REAL ll = fa > fb ? fa : fb;
            c = frames[b] >= states[b] && !p;
            value = c ? -ll : 0;
        }
        loss[b] = p ? (REAL)NAN : value;
        counted[b] = (uint8_t)c;
        poisoned[b] = (uint8_t)p;
    }
}

/* The gradient's per-example scale: the incoming gradient, 0 where the loss is not
 * counted, NaN where the example is poisoned and has a gradient. */
void FN(ctc_grad_scale)(const REAL *grad_loss, int64_t stride, const uint8_t *counted,
                        const uint8_t *poisoned, int64_t B, REAL *scale) {
    for (int64_t b = 0; b < B; ++b) {
        const REAL g = grad_loss[b * stride];
        scale[b] = poisoned[b] && g != 0 ? (REAL)NAN : (counted[b] ? g : 0);
    }
}

/* ctc_loss's whole forward pass for a small float batch in one call (the fixed cost of
 * four calls and their tensors was a fifth of a step at (4, 50, 10, 10)): the checks of
 * ctc_check_augmented (with check; any bit of faults, or no NOT_PROBABILITIES bit, stops
 * the call before any id is used, and the caller takes the path that names the fault),
 * then ctc_log_softmax, ctc_forward and ctc_finish_loss. Returns the verdict word
 * (V_NOT_PROBABILITIES without check). All inputs contiguous: x (B, T, C), labels
 * (B, L); lp (B, T, C), alpha (B, T, L), loss, counted and poisoned (B,) receive the
 * outputs. -1: it could not allocate. */
int32_t FN(ctc_loss_forward)(const REAL *x, int64_t T, int64_t C, const int64_t *labels,
                             int64_t L, const int64_t *labels_len, const int64_t *logits_len,
                             int64_t B, int64_t check, int32_t faults, int64_t exact,
                             int64_t zero_infinity, REAL *lp, REAL *alpha, REAL *loss,
                             uint8_t *counted, uint8_t *poisoned) {
    int32_t verdict = V_NOT_PROBABILITIES;
    if (check) {
        FN(ctc_check_augmented)(labels, L, 1, labels_len, x, T * C, 1, logits_len, B, L, T, C,
                                &verdict);
        if ((verdict & faults) || !(verdict & V_NOT_PROBABILITIES)) return verdict;
    }
    uint8_t *bad = (uint8_t *)malloc(B * T > 0 ? (size_t)(B * T) : 1);
    REAL *finals = (REAL *)malloc(sizeof(REAL) * 2 * (size_t)(B > 0 ? B : 1));
    if (!bad || !finals) {  /* the caller raises MemoryError */
        free(finals);
        free(bad);
        return -1;
    }
    FN(ctc_log_softmax)(x, T, C, logits_len, 0, B, lp, bad);
    FN(ctc_forward)(lp, T, C, labels, L, labels_len, logits_len, 0, B, alpha, finals);
    FN(ctc_finish_loss)(finals, bad, labels_len, logits_len, B, T, exact, zero_infinity, loss,
                        counted, poisoned);
    free(finals);
    free(bad);
    return verdict;
}

/* The gradient for ctc_loss_forward's outputs in one call: ctc_grad_scale, then
 * ctc_backward over the whole batch into grad (B, T, C). Returns 0, or -1 where it
 * could not allocate. */
int FN(ctc_loss_backward)(const REAL *lp, int64_t T, int64_t C, const int64_t *labels,
                           int64_t L, const int64_t *labels_len, const int64_t *logits_len,
                           const REAL *alpha, const REAL *grad_loss, int64_t stride,
                           const uint8_t *counted, const uint8_t *poisoned, int64_t B,
                           REAL *grad) {
    REAL *scale = (REAL *)malloc(sizeof(REAL) * (B > 0 ? (size_t)B : 1));
    if (!scale) return -1;  /* the caller raises MemoryError */
    FN(ctc_grad_scale)(grad_loss, stride, counted, poisoned, B, scale);
    FN(ctc_backward)(lp, T, C, labels, L, labels_len, logits_len, alpha, scale, 0, B, grad);
    free(scale);
    return 0;
}
