/* The CPU kernel of seq_loss_util's CTC loss (Graves et al. 2006), in C.
 *
 * Compiled twice by cpu.py, once per floating type: REAL, SFX, EXP and LOG are
 * defined before this text (float/f32/expf/logf, double/f64/exp/log). Every function
 * works on the examples b0 <= b < b1 of a batch, so Python can split a batch over
 * threads. The recursion is the same as seq_loss_util's PyTorch backend: log alpha
 * normalised per frame (its largest state 0), beta recomputed frame by frame in
 * backward, the gradient written straight into (B, T, C).
 */
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

/* log(exp(a) + exp(b) + exp(c)); -inf when all three are -inf. */
static inline REAL FN(lse3)(REAL a, REAL b, REAL c) {
    REAL m = a > b ? a : b;
    m = m > c ? m : c;
    if (m == NEG_INF) return NEG_INF;
    return m + LOG(EXP(a - m) + EXP(b - m) + EXP(c - m));
}

/* Forward variables (Graves et al. 2006, eq. 6-7) for examples b0 <= b < b1.
 * lp (B, T, C) log-probabilities; labels (B, L) augmented; alpha (B, T, L) receives
 * log alpha shifted per frame so that its largest state is 0; finals (B, 2) receives
 * the unnormalised log alpha of states L_b - 1 and L_b - 2 at frame T_b - 1. */
void FN(ctc_forward)(const REAL *lp, int64_t T, int64_t C, const int64_t *labels,
                     int64_t L, const int64_t *label_len, const int64_t *logit_len,
                     int64_t b0, int64_t b1, REAL *alpha, REAL *finals) {
    REAL *start = (REAL *)malloc(sizeof(REAL) * (L > 0 ? L : 1));
    for (int64_t s = 0; s < L; ++s) start[s] = NEG_INF;
    if (L > 0) start[0] = 0;  /* the start vector: a virtual frame before t = 0 */
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t *l = labels + b * L;
        const int64_t Tb = logit_len[b], Lb = label_len[b];
        const REAL *lpb = lp + b * T * C;
        REAL *ab = alpha + b * T * L;
        double total = 0;  /* the shifts: float32 would lose ~0.1 nat over 6000 frames */
        finals[2 * b] = finals[2 * b + 1] = NEG_INF;
        if (Lb == 0) {
            for (int64_t i = 0; i < T * L; ++i) ab[i] = NEG_INF;
            continue;
        }
        for (int64_t t = 0; t < Tb; ++t) {
            const REAL *prev = t == 0 ? start : ab + (t - 1) * L;
            const REAL *e = lpb + t * C;
            REAL *cur = ab + t * L, m = NEG_INF;
            for (int64_t s = 0; s < Lb; ++s) {
                REAL stay = prev[s];
                REAL advance = s >= 1 ? prev[s - 1] : NEG_INF;
                REAL skip = (s >= 2 && (s & 1) && l[s] != l[s - 2]) ? prev[s - 2] : NEG_INF;
                REAL x = FN(lse3)(stay, advance, skip) + e[l[s]];
                cur[s] = x;
                if (x > m) m = x;
            }
            if (m > NEG_INF) {
                for (int64_t s = 0; s < Lb; ++s) cur[s] -= m;
                total += m;
            }
        }
        const REAL *last = Tb > 0 ? ab + (Tb - 1) * L : start;  /* no frames: the start */
        finals[2 * b] = (REAL)(last[Lb - 1] + total);
        if (Lb >= 2) finals[2 * b + 1] = (REAL)(last[Lb - 2] + total);
        /* Padded states and frames hold -inf: alpha is a defined output, bit for bit. */
        for (int64_t t = 0; t < T; ++t)
            for (int64_t s = t < Tb ? Lb : 0; s < L; ++s) ab[t * L + s] = NEG_INF;
    }
    free(start);
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
    REAL *beta = (REAL *)malloc(sizeof(REAL) * (L + 2));
    REAL *next = (REAL *)malloc(sizeof(REAL) * (L + 2));
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t *l = labels + b * L;
        const int64_t Tb = logit_len[b], Lb = label_len[b];
        const REAL *lpb = lp + b * T * C, *ab = alpha + b * T * L;
        const REAL sc = scale[b];
        REAL *gb = grad + b * T * C;
        if (sc == 0 || Tb == 0 || Lb == 0) {
            FN(zero)(gb, T * C);
            continue;
        }
        FN(zero)(gb + Tb * C, (T - Tb) * C);
        for (int64_t s = 0; s < Lb; ++s) beta[s] = NEG_INF;
        beta[Lb - 1] = 0;
        if (Lb >= 2) beta[Lb - 2] = 0;
        next[Lb] = next[Lb + 1] = NEG_INF;
        for (int64_t t = Tb - 1; t >= 0; --t) {
            if (t < Tb - 1) {  /* beta over frames after t, from beta of frame t + 1 */
                const REAL *e = lpb + (t + 1) * C;
                for (int64_t s = 0; s < Lb; ++s) next[s] = beta[s] + e[l[s]];
                REAL m = NEG_INF;
                for (int64_t s = 0; s < Lb; ++s) {
                    REAL skip = ((s & 1) && s + 2 < Lb && l[s + 2] != l[s]) ? next[s + 2] : NEG_INF;
                    REAL y = FN(lse3)(next[s], next[s + 1], skip);
                    beta[s] = y;
                    if (y > m) m = y;
                }
                if (m > NEG_INF)
                    for (int64_t s = 0; s < Lb; ++s) beta[s] -= m;
            }
            const REAL *a = ab + t * L, *e = lpb + t * C;
            REAL m = NEG_INF, sum = 0;
            for (int64_t s = 0; s < Lb; ++s)
                if (a[s] + beta[s] > m) m = a[s] + beta[s];
            for (int64_t s = 0; s < Lb; ++s) sum += EXP(a[s] + beta[s] - m);
            const REAL log_z = m + LOG(sum);
            REAL *g = gb + t * C;
            for (int64_t c = 0; c < C; ++c) g[c] = EXP(e[c]) * sc;
            for (int64_t s = 0; s < Lb; ++s) g[l[s]] -= EXP(a[s] + beta[s] - log_z) * sc;
        }
    }
    free(beta);
    free(next);
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
