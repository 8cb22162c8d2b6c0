/* The CPU kernel of ctc_decoder's prefix beam search (Graves 2012, sec. 7.4; Hannun
 * et al. 2014), in C: the same search as ctc_decoder._search, example by example.
 *
 * Compiled with cpu.c by cpu.py, twice (REAL, SFX, EXP and LOG defined before the
 * text), into one library. ctc_beam_search works on the examples b0 <= b < b1, so
 * Python can split a batch over threads.
 *
 * Per frame, a prefix keeps two log-probabilities: of the alignments ending in a blank
 * (pb) and of those ending in its last label (pnb). Candidates are every beam as it is
 * (stay) and every beam extended by each of the frame's V candidate tokens; paths that
 * reach one prefix are merged by log-sum-exp. The K best by rank form the next beam,
 * ordered by (rank descending, candidate index ascending: stays 0..K-1, then beam k
 * with token c at K + k C + c; the PyTorch version orders exact ties differently).
 * What makes it fast is exact, not approximate: extensions are visited in descending
 * order of an upper bound of their rank, and the visit stops when the bound falls
 * below the K-th best rank so far.
 *
 * Words (optional): each token's characters as polynomial-hash parts, the word
 * boundary tokens, a word n-gram model as sorted tables (ngram_lm.NgramLM), hotword
 * phrases as sorted hashes. A word is scored when it ends; its score is cached in its
 * beam, so the model is asked once per new word, not once per frame. With a model, a
 * table of known continuations (for each known prefix, the tokens that keep it one)
 * lets the search bound every other word-continuing token with the penalty for a
 * prefix no word begins with.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FN
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SFX)
#endif
#define BEAM_NEG_INF (-(REAL)INFINITY)
#undef BEAM_EPS
#define BEAM_EPS ((REAL)(sizeof(REAL) == sizeof(float) ? 1.1920929e-07 : 2.220446049250313e-16))
#undef BEAM_LOG1P
#define BEAM_LOG1P(x) ((REAL)(sizeof(REAL) == sizeof(float) ? log1pf((float)(x)) : log1p((double)(x))))

/* An n-gram model's tables (ngram_lm.NgramLM); order 0: none. */
struct ctc_lm {
    int64_t order, size, unk, bos, eos;
    double unk_prob;
    const int64_t *const *keys;       /* per level: sorted keys */
    const double *const *prob;        /* per level: ln p */
    const double *const *backoff;     /* per level: ln backoff */
    const uint8_t *const *real;       /* per level: scored (not a placeholder) */
    const int64_t *counts;            /* per level: entries */
};

/* What ctc_decoder._Words holds, as arrays (mirrored by a ctypes.Structure). */
struct ctc_words {
    const int64_t *char_hash, *char_power, *char_len;
    const uint8_t *boundary;
    int64_t prefix_mode;  /* SentencePiece: a boundary token starts a word */
    double lm_weight, word_score, hotword_weight, partial_oov;
    struct ctc_lm lm;                 /* the word model */
    const int64_t *hash_keys, *hash_ids;
    int64_t n_hash;
    const int64_t *prefixes;          /* sorted hashes of known word prefixes */
    int64_t n_prefixes;
    const int64_t *phrases;           /* sorted hotword phrase hashes */
    int64_t n_phrases, phrase_len;
    /* Known continuations: for each sorted key (a known prefix's hash, or 0 for the
     * empty one), child_tokens[child_start[j] .. child_start[j + 1]) are the tokens
     * that grow it into a known prefix (ctc_decoder._Words._children). */
    const int64_t *child_keys, *child_start, *child_tokens;
    int64_t n_child_keys;
    /* An upper bound of any word's ln p under the LM (0 without one): above 0 only
     * where positive backoffs could lift a word's score, which the bound below needs. */
    double lm_max;
    /* A completed word whose hash is not in words (sorted; the LM's vocabulary and the
     * hotwords) costs unk_score + partial_oov * max(0, len / partial_chars - 1); an
     * unfinished word no known word begins with ranks partial_oov * max(1, len /
     * partial_chars) lower (ctc_decoder._Words.unknown_cost and .penalty). */
    double unk_score, partial_chars;
    const int64_t *words;
    int64_t n_words;
    /* A token-level model (tlm.order 0: none), scored at every token appended, with
     * weight tlm_weight (>= 0): tlm_ids[c] is token c's word id in it; tlm_max bounds
     * any token's ln p under it. */
    struct ctc_lm tlm;
    const int64_t *tlm_ids;
    double tlm_weight, tlm_max;
};

#ifndef CTC_BEAM_SHARED
#define CTC_BEAM_SHARED
/* splitmix64's finaliser over a running hash (ctc_decoder._mix): int64 wraps. */
static inline int64_t beam_mix(int64_t h, int64_t item) {
    uint64_t z = (uint64_t)h * 0x9E3779B97F4A7C15ULL + (uint64_t)item + 1;
    z ^= z >> 31;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 29;
    return (int64_t)z;
}

/* A beam slot's link in the history, at a frame: its slot at the frame before and the
 * token it emitted (-1: none). Together, as a path's walk reads both at each step. */
typedef struct { int32_t src, tok; } beam_link;

/* Room for need items in the two int64 arrays *a and *b of room *cap (grown by half
 * again, at least 64). Returns 0, or -1 when memory ran out. */
static int beam_grow_pair(int64_t **a, int64_t **b, int64_t *cap, int64_t need) {
    if (need <= *cap) return 0;
    int64_t room = *cap + *cap / 2;
    if (room < need) room = need;
    if (room < 64) room = 64;
    int64_t *x = realloc(*a, sizeof(int64_t) * room);
    if (!x) return -1;
    *a = x;
    int64_t *y = realloc(*b, sizeof(int64_t) * room);
    if (!y) return -1;
    *b = y;
    *cap = room;
    return 0;
}

/* Index of key in a sorted array, or -1. */
static inline int64_t beam_find(const int64_t *keys, int64_t n, int64_t key) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key) lo = mid + 1; else hi = mid;
    }
    return (lo < n && keys[lo] == key) ? lo : -1;
}

/* ln p(word | context) under model w with backoff (NgramLM.score); context: depth ids,
 * most recent last, -1 for none. Writes the next context to after (may alias nothing). */
static double beam_lm_score(const struct ctc_lm *w, const int64_t *context,
                            int64_t word, int64_t *after) {
    int64_t depth = w->order - 1;
    double total = 0;
    int done = 0;
    for (int64_t length = depth; length >= 0 && !done; --length) {
        int ok = 1;
        int64_t node = 0;
        for (int64_t step = 0; step < length && ok; ++step) {
            int64_t id = context[depth - length + step];
            if (id < 0) { ok = 0; break; }
            int64_t key = step == 0 ? id : node * w->size + id;
            node = beam_find(w->keys[step], w->counts[step], key);
            if (node < 0) ok = 0;
        }
        int64_t at = -1;
        if (ok) at = beam_find(w->keys[length], w->counts[length],
                               length == 0 ? word : node * w->size + word);
        if (at >= 0 && w->real[length][at]) {
            total += w->prob[length][at];
            done = 1;
        } else if (length > 0 && ok) {
            total += w->backoff[length - 1][node];
        }
    }
    if (!done) total += w->unk_prob;
    if (after) {
        for (int64_t i = 0; i + 1 < depth; ++i) after[i] = context[i + 1];
        if (depth > 0) after[depth - 1] = word;
    }
    return total;
}

/* The stream's threads. A chunk's call (ctc_beam_stream_feed_logits) is shared by
 * threads that take its examples from counters; a thread pool in Python started its
 * helper some 56 us into a chunk (a condition variable, then the GIL, then ctypes),
 * and a chunk on two threads takes some 300 us. These workers live in the library,
 * never touch Python, and after a chunk watch for the next one for BEAM_SPIN_NS (the
 * caller's Python between two chunks, partial() and feed(), takes some tens of
 * microseconds) before they sleep. One chunk at a time: a caller that finds the pool
 * taken (another stream's chunk, on another Python thread) runs its chunk alone. */
typedef struct beam_job {
    /* Runs the chunk on one thread, sharing the counters shared[7] (zeroed). */
    int64_t (*run)(const struct beam_job *job, int64_t *shared);
    void *stream;
    const void *x;
    int64_t stride_b, T;
    const int64_t *frames;
    const uint8_t *finished;
    int64_t horizon;
    void *lp;
    uint8_t *bad;
} beam_job;

#define BEAM_POOL_MAX 256
#define BEAM_SPIN_NS 150000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;  /* a job posted */
    uint64_t seq;  /* jobs posted: workers watch it (atomic: read without mu) */
    int open;  /* the job takes workers (until its caller's own call returns) */
    int wanted, taken, joined;  /* workers the job takes, has taken, has in it now */
    int workers, sleepers, busy, forkable;
    int64_t jobs, joins;  /* jobs posted and workers that joined one: for the tests */
    beam_job job;
    int64_t shared[7];
    uint64_t born[BEAM_POOL_MAX];  /* seq when each worker started */
} beam_pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

static inline void beam_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t beam_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* fork: the child has none of the parent's workers, and mu is taken around the fork so
 * the child's copy is in a known state; the child starts with an empty pool. */
static void beam_pool_prefork(void) { pthread_mutex_lock(&beam_pool.mu); }
static void beam_pool_parent(void) { pthread_mutex_unlock(&beam_pool.mu); }
static void beam_pool_child(void) {
    /* (The forking thread holds mu: it unlocks it. The condition variable's waiters
     * were the parent's workers, gone here: it starts anew.) */
    pthread_mutex_unlock(&beam_pool.mu);
    pthread_cond_init(&beam_pool.work, NULL);
    beam_pool.open = beam_pool.wanted = beam_pool.taken = beam_pool.joined = 0;
    beam_pool.workers = beam_pool.sleepers = beam_pool.busy = 0;
}

static void *beam_pool_worker(void *arg) {
    const int index = (int)(uintptr_t)arg;
    pthread_mutex_lock(&beam_pool.mu);
    uint64_t seen = beam_pool.born[index];  /* the last job this worker looked at */
    int wanted = beam_pool.wanted;
    pthread_mutex_unlock(&beam_pool.mu);
    for (;;) {
        /* Only a worker the last job wanted watches for the next (one beyond them, left
         * from a call on more threads, would take a core from those working). */
        const uint64_t start = beam_now_ns();
        for (int i = 1; index < wanted
                        && __atomic_load_n(&beam_pool.seq, __ATOMIC_ACQUIRE) == seen; ++i) {
            beam_pause();
            if (!(i & 255) && beam_now_ns() - start > BEAM_SPIN_NS) break;
        }
        pthread_mutex_lock(&beam_pool.mu);
        while (__atomic_load_n(&beam_pool.seq, __ATOMIC_ACQUIRE) == seen) {
            ++beam_pool.sleepers;
            pthread_cond_wait(&beam_pool.work, &beam_pool.mu);
            --beam_pool.sleepers;
        }
        seen = __atomic_load_n(&beam_pool.seq, __ATOMIC_ACQUIRE);
        wanted = beam_pool.wanted;
        if (beam_pool.open && beam_pool.taken < beam_pool.wanted) {
            /* The job and its counters stay as they are until joined is 0 again. */
            ++beam_pool.taken, ++beam_pool.joins;
            __atomic_add_fetch(&beam_pool.joined, 1, __ATOMIC_ACQ_REL);
            pthread_mutex_unlock(&beam_pool.mu);
            beam_pool.job.run(&beam_pool.job, beam_pool.shared);
            /* Left without the lock: the caller is waiting for this very moment. */
            __atomic_sub_fetch(&beam_pool.joined, 1, __ATOMIC_ACQ_REL);
        } else {
            pthread_mutex_unlock(&beam_pool.mu);
        }
    }
    return NULL;
}

/* job on threads threads: the calling one and up to threads - 1 of the pool's (started
 * here as needed), which join while the caller's own run lasts; returns the caller's
 * verdict once no worker is in the job. */
static int64_t beam_pool_run(const beam_job *job, int64_t threads) {
    int64_t alone[7] = {0, 0, 0, 0, 0, 0, 0};
    if (threads <= 1) return job->run(job, alone);
    if (threads > BEAM_POOL_MAX) threads = BEAM_POOL_MAX;
    pthread_mutex_lock(&beam_pool.mu);
    if (beam_pool.busy) {  /* another chunk has the pool */
        pthread_mutex_unlock(&beam_pool.mu);
        return job->run(job, alone);
    }
    if (!beam_pool.forkable)
        beam_pool.forkable = !pthread_atfork(beam_pool_prefork, beam_pool_parent,
                                             beam_pool_child);
    while (beam_pool.forkable && beam_pool.workers < threads - 1) {
        pthread_attr_t attr;
        pthread_t id;
        if (pthread_attr_init(&attr)) break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        beam_pool.born[beam_pool.workers] = beam_pool.seq;
        const int failed = pthread_create(&id, &attr, beam_pool_worker,
                                          (void *)(uintptr_t)beam_pool.workers);
        pthread_attr_destroy(&attr);
        if (failed) break;  /* fewer threads: the counters balance whatever joins */
        ++beam_pool.workers;
    }
    if (!beam_pool.workers) {
        pthread_mutex_unlock(&beam_pool.mu);
        return job->run(job, alone);
    }
    beam_pool.busy = 1;
    beam_pool.job = *job;
    memset(beam_pool.shared, 0, sizeof(beam_pool.shared));
    beam_pool.open = 1;
    beam_pool.wanted = (int)(threads - 1);
    beam_pool.taken = beam_pool.joined = 0;
    ++beam_pool.jobs;
    __atomic_store_n(&beam_pool.seq, beam_pool.seq + 1, __ATOMIC_RELEASE);
    if (beam_pool.sleepers) pthread_cond_broadcast(&beam_pool.work);
    pthread_mutex_unlock(&beam_pool.mu);
    const int64_t verdict = job->run(&beam_pool.job, beam_pool.shared);
    pthread_mutex_lock(&beam_pool.mu);
    beam_pool.open = 0;  /* no worker joins from here on */
    pthread_mutex_unlock(&beam_pool.mu);
    /* The workers in the job are leaving it: the run waited for those in the chunk's
     * work, and one that joined after the work was done returns at once (the counters
     * tell it), having read nothing of the chunk. A wait on a condition variable here
     * cost a wake-up (tens of microseconds) a chunk. */
    for (int i = 1; __atomic_load_n(&beam_pool.joined, __ATOMIC_ACQUIRE); ++i)
        if (i % 64) beam_pause(); else sched_yield();
    pthread_mutex_lock(&beam_pool.mu);
    beam_pool.busy = 0;
    pthread_mutex_unlock(&beam_pool.mu);
    return verdict;
}
#endif

/* One beam slot. ctx and recent point into per-slot rows of two arrays. */
typedef struct {
    REAL pb, pnb, tot, lm, hot, delta, lm_word, bonus;  /* tot: lse2(pb, pnb), kept */
    /* Unknown words' cost so far, and the unfinished word's once completed: in double,
     * as Hypothesis.unk_score reports them (a float sum of -0.05s drifts). */
    double unkc, ucost;
    REAL tlm;          /* the token model's ln p of the tokens so far */
    int64_t len, last, hash, parent, phash, plen, words;
    int64_t ch_lo, ch_n;  /* its known continuations in child_tokens; ch_n < 0: not found
                             yet, or (ch_lo < 0) its prefix has no entry */
    int known_prefix;  /* the unfinished word begins a word the model knows (or none) */
    int ready;         /* delta, lm_word, bonus, oov and the context after are computed */
    int oov;           /* the unfinished word, completed, would be unknown */
} FN(beam_slot);

typedef struct { REAL rank; int64_t index; int known; } FN(beam_cand);

/* a ranks before b: higher rank, then lower index. */
static inline int FN(beam_before)(const FN(beam_cand) *a, const FN(beam_cand) *b) {
    return a->rank > b->rank || (a->rank == b->rank && a->index < b->index);
}

/* A min-heap (worst on top) of the K best candidates so far. */
/* Fields, not a struct by value: a struct built on the stack and reloaded whole
 * stalls on store forwarding (measured: 14% of the search's time). */
static void FN(heap_push)(FN(beam_cand) *heap, int64_t *n, int64_t cap, REAL rank,
                          int64_t index, int known) {
    FN(beam_cand) c;
    c.rank = rank;
    c.index = index;
    c.known = known;
    if (*n == cap) {
        if (!FN(beam_before)(&c, &heap[0])) return;
        int64_t i = 0;
        for (;;) {  /* sift the new one down from the top */
            int64_t l = 2 * i + 1, r = l + 1, worst = -1;
            const FN(beam_cand) *at = &c;
            if (l < cap && FN(beam_before)(at, &heap[l])) { worst = l; at = &heap[l]; }
            if (r < cap && FN(beam_before)(at, &heap[r])) worst = r;
            if (worst < 0) break;
            heap[i] = heap[worst];
            i = worst;
        }
        heap[i] = c;
        return;
    }
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t up = (i - 1) / 2;
        if (!FN(beam_before)(&heap[up], &c)) break;
        heap[i] = heap[up];
        i = up;
    }
    heap[i] = c;
}

/* log(e^a + e^b). Where the smaller term is below a quarter of the larger's last
 * place (|m| >= 1 and d < -18 in float, -38 in double: e^d < 2^-25 resp. 2^-54), the
 * sum rounds to m, so m is returned without computing it: the same bits, and in a
 * peaky output most sums are of this kind (a blank run leaves pnb far below pb). */
static inline REAL FN(beam_abs)(REAL x) {
    return x < 0 ? -x : x;  /* NaN stays NaN; -inf becomes inf */
}

static inline REAL FN(lse2)(REAL a, REAL b) {
    REAL m = a > b ? a : b, d = a > b ? b - a : a - b;
    if (m == BEAM_NEG_INF) return BEAM_NEG_INF;
    if (d < (sizeof(REAL) == sizeof(float) ? (REAL)-18 : (REAL)-38) && (m <= -1 || m >= 1))
        return m;
    if (d == BEAM_NEG_INF) return m;
    return m + BEAM_LOG1P(EXP(d));
}

/* The cached score of completing slot s's unfinished word now: LM, word score and
 * hotwords; writes the context after it to ctx_after. */
static void FN(beam_completion)(const struct ctc_words *w, FN(beam_slot) *s,
                                const int64_t *ctx, const int64_t *recent, int64_t *ctx_after) {
    int64_t depth = w->lm.order > 0 ? w->lm.order - 1 : 0;
    if (s->ready) return;
    s->ready = 1;
    s->delta = s->lm_word = s->bonus = s->ucost = 0;
    s->oov = 0;
    if (depth) memcpy(ctx_after, ctx, sizeof(int64_t) * depth);
    if (s->plen <= 0) return;
    double lm_word = 0, bonus = 0;
    if (w->lm.order > 0) {
        int64_t at = beam_find(w->hash_keys, w->n_hash, s->phash);
        int64_t id = at >= 0 ? w->hash_ids[at] : w->lm.unk;
        lm_word = beam_lm_score(&w->lm, ctx, id, ctx_after);
    }
    /* Words are known or not where there is an LM or a lexicon (never empty). */
    if (w->lm.order > 0 || w->n_words > 0) s->oov = beam_find(w->words, w->n_words, s->phash) < 0;
    if (w->n_phrases) {
        int64_t H = w->phrase_len - 1;
        for (int64_t length = 1; length <= w->phrase_len; ++length) {
            int64_t h = length;
            int ok = 1;
            for (int64_t j = 0; j < length - 1; ++j) {
                int64_t earlier = recent[H - (length - 1) + j];
                ok &= earlier != 0;
                h = beam_mix(h, earlier);
            }
            h = beam_mix(h, s->phash);
            if (ok && beam_find(w->phrases, w->n_phrases, h) >= 0) bonus += 1;
        }
        bonus *= w->hotword_weight;
    }
    s->lm_word = (REAL)lm_word;
    s->bonus = (REAL)bonus;
    double ucost = 0;
    if (s->oov) {  /* unk_score, and partial_oov per partial_chars past the first ones */
        double excess = (double)s->plen / w->partial_chars - 1.0;
        ucost = w->unk_score + w->partial_oov * (excess > 0 ? excess : 0);
    }
    s->ucost = ucost;
    s->delta = (REAL)(w->lm_weight * s->lm_word + w->word_score + s->bonus + ucost);
}

/* A word boundary token that is always among the candidates: with a delimiter, when
 * not every token competes (the LM and word scores change its rank). */
static inline int FN(beam_lifted)(const struct ctc_words *w, int64_t c, int64_t V, int64_t C) {
    return w && !w->prefix_mode && V < C - 1 && w->boundary[c];
}

/* The known prefixes as an open-addressing set (slots hold hash values; `used` marks
 * the taken ones), built once per call: a lookup is one or two probes, where a binary
 * search over thousands of prefixes mispredicts a branch at every step. */
typedef struct { int64_t *slots; uint8_t *used; uint64_t mask; } FN(beam_set);

static int FN(set_build)(FN(beam_set) *set, const int64_t *values, int64_t n) {
    uint64_t size = 1;
    while (size < 2 * (uint64_t)n) size <<= 1;
    set->slots = malloc(sizeof(int64_t) * size);
    set->used = calloc(size, 1);
    set->mask = size - 1;
    if (!set->slots || !set->used) return -1;
    for (int64_t j = 0; j < n; ++j) {
        uint64_t i = (uint64_t)beam_mix(values[j], 0) & set->mask;
        while (set->used[i] && set->slots[i] != values[j]) i = (i + 1) & set->mask;
        set->slots[i] = values[j];
        set->used[i] = 1;
    }
    return 0;
}

static inline int FN(beam_known)(const struct ctc_words *w, const FN(beam_set) *set,
                                 int64_t phash, int64_t plen) {
    if (w->n_prefixes == 0 || plen <= 0) return 1;
    for (uint64_t i = (uint64_t)beam_mix(phash, 0) & set->mask; set->used[i];
         i = (i + 1) & set->mask)
        if (set->slots[i] == phash) return 1;
    return 0;
}

/* The table of known continuations (ctc_decoder._Words._children), by the search's
 * own rule and hash set: out[j * n_inner + i] = 1 where key j grown by inner token i's
 * characters (hash parts power[i], part[i]; len[i] of them) is a known prefix, or the
 * token adds none. One or two probes each: the same test as torch.isin took 4.3 s for
 * 750,000 keys of a 100,000-word vocabulary times 26 tokens. Returns 0, or -1 when
 * memory ran out. */
int FN(ctc_beam_children)(const int64_t *prefixes, int64_t n_prefixes, const int64_t *keys,
                          int64_t n_keys, const int64_t *power, const int64_t *part,
                          const int64_t *len, int64_t n_inner, uint8_t *out) {
    FN(beam_set) set = {NULL, NULL, 0};
    int failed = FN(set_build)(&set, prefixes, n_prefixes);
    for (int64_t j = 0; j < n_keys && !failed; ++j) {
        for (int64_t i = 0; i < n_inner; ++i) {
            uint8_t known = len[i] == 0;
            int64_t h = (int64_t)((uint64_t)keys[j] * (uint64_t)power[i] + (uint64_t)part[i]);
            for (uint64_t at = (uint64_t)beam_mix(h, 0) & set.mask; !known && set.used[at];
                 at = (at + 1) & set.mask)
                known = set.slots[at] == h;
            out[j * n_inner + i] = known;
        }
    }
    free(set.slots);
    free(set.used);
    return failed ? -1 : 0;
}

/* The part of a slot's score that is not acoustic: its words' LM, word and hotword
 * scores. */
static inline REAL FN(beam_extra)(const struct ctc_words *w, const FN(beam_slot) *s) {
    if (!w) return 0;
    return (REAL)(w->lm_weight * s->lm + w->word_score * (double)s->words) + s->hot
           + (REAL)s->unkc + (REAL)(w->tlm_weight * s->tlm);
}

/* ln p(token c | the tokens before) under the token model; tctx: its context. */
static inline REAL FN(beam_token_lp)(const struct ctc_words *w, const int64_t *tctx,
                                     int64_t c) {
    return (REAL)beam_lm_score(&w->tlm, tctx, w->tlm_ids[c], NULL);
}

/* The search's rank penalty of an unfinished word of len characters that begins no
 * word the model knows: it grows with the word past partial_chars. Never above
 * partial_oov (<= 0), and lower for a longer word, so the penalty at a beam's own
 * length bounds every word-continuing extension's. */
static inline REAL FN(beam_penalty)(const struct ctc_words *w, int64_t len) {
    if (w->unk_score == -INFINITY) return BEAM_NEG_INF;  /* unknown words forbidden */
    double scale = (double)len / w->partial_chars;
    return (REAL)(w->partial_oov * (scale > 1 ? scale : 1));
}

/* A slot's rank beyond its acoustic score: the above, and the search's penalty for an
 * unfinished word that begins no word the model knows. */
static inline REAL FN(beam_rank_extra)(const struct ctc_words *w, const FN(beam_slot) *s) {
    if (!w) return 0;
    return FN(beam_extra)(w, s) + (s->known_prefix ? 0 : FN(beam_penalty)(w, s->plen));
}

/* What one frame's candidate evaluation reads. The candidate tokens are split by
 * kind, list[0] the others and list[1] the word boundaries, each sorted best first
 * as far as ranked[kind] (lazily, where every token competes). An extension's index,
 * for ties, is K + k C + token. */
typedef struct {
    const struct ctc_words *w;
    FN(beam_slot) *cur;
    int64_t *rows, row, depth, H;
    const REAL *total, *e;
    int64_t *list[2], count[2], ranked[2], K, V, C;
    const int64_t *map;
    int64_t map_size;
    FN(beam_cand) *heap;   /* the extensions kept so far: a min-heap of at most K */
    int64_t n_heap;
    const FN(beam_cand) *kth_stay;  /* the K-th best stay, or NULL (fewer than K) */
    REAL delta_bound, token_min_logp, last_rank;  /* last_rank: the last one pushed */
    const FN(beam_set) *prefixes;
    const uint8_t *in_list;  /* the tokens of list 0 (where known continuations are used) */
} FN(beam_frame);

/* Orders candidate tokens: lifted first, then higher log-probability, then lower id. */
static inline int FN(token_before)(const struct ctc_words *w, const REAL *e, int64_t V,
                                   int64_t C, int64_t a, int64_t b) {
    int la = FN(beam_lifted)(w, a, V, C), lb = FN(beam_lifted)(w, b, V, C);
    if (la != lb) return la > lb;
    if (e[a] != e[b]) return e[a] > e[b];
    return a < b;
}

/* The frame's candidate tokens: the first V non-blank ones in that order, sorted,
 * into order[0..n). A bounded selection keeps it O(C log V) for large vocabularies. */
static int64_t FN(candidate_tokens)(const struct ctc_words *w, const REAL *e, int64_t C,
                                    int64_t blank, int64_t V, int64_t *order) {
    int64_t n = 0;
    for (int64_t c = 0; c < C; ++c) {
        if (c == blank) continue;
        /* Insertion into the sorted prefix, dropping what falls past V. */
        if (n == V && !FN(token_before)(w, e, V, C, c, order[n - 1])) continue;
        int64_t i = n < V ? n++ : n - 1;
        while (i > 0 && FN(token_before)(w, e, V, C, c, order[i - 1])) {
            order[i] = order[i - 1];
            --i;
        }
        order[i] = c;
    }
    return n;
}

/* Sorts list kind lazily up to position i: selection of the best left. */
static inline void FN(rank_upto)(FN(beam_frame) *f, int kind, int64_t i) {
    int64_t *list = f->list[kind];
    while (f->ranked[kind] <= i) {
        int64_t at = f->ranked[kind], best = at;
        for (int64_t j = at + 1; j < f->count[kind]; ++j)
            if (FN(token_before)(f->w, f->e, f->V, f->C, list[j], list[best])) best = j;
        int64_t tmp = list[at]; list[at] = list[best]; list[best] = tmp;
        ++f->ranked[kind];
    }
}

/* What a candidate must beat to be among the K best: the K-th best stay, or the worst
 * of K extensions kept, whichever ranks higher (either set alone holds K at least that
 * good); NULL while neither holds K. */
static inline const FN(beam_cand) *FN(frame_floor)(const FN(beam_frame) *f) {
    const FN(beam_cand) *floor = f->kth_stay;
    if (f->n_heap == f->K && (!floor || FN(beam_before)(&f->heap[0], floor)))
        floor = &f->heap[0];
    return floor;
}

/* Beam k extended by token c (ends: a word boundary): kept if it may rank among the K.
 * skip_known: a token that leaves a known prefix is not this call's (it came from the
 * penalised list, and the beam's known continuations are tried on their own). */
static void FN(beam_try)(FN(beam_frame) *f, int64_t k, int ends, int64_t c, int skip_known) {
    const struct ctc_words *w = f->w;
    FN(beam_slot) *s = &f->cur[k];
    int64_t K = f->K;
    REAL lpc = f->e[c];
    if (lpc < f->token_min_logp) return;
    REAL score = (c == s->last ? s->pb : f->total[k]) + lpc;
    if (score == BEAM_NEG_INF) return;
    REAL rank = score + FN(beam_extra)(w, s);
    if (w && w->tlm.order > 0)  /* the token model's ln p of c after the beam's tokens */
        rank += (REAL)(w->tlm_weight * FN(beam_token_lp)(w, f->rows + k * f->row
                                                        + 2 * f->depth + f->H, c));
    if (ends && s->plen > 0) {  /* it ends the unfinished word */
        const FN(beam_cand) *floor = FN(frame_floor)(f);
        if (floor && rank + f->delta_bound < floor->rank) return;
        int64_t *r = f->rows + k * f->row;
        FN(beam_completion)(w, s, r, r + f->depth, r + f->depth + f->H);
        rank += s->delta;
    }
    FN(beam_cand) cand;
    cand.rank = rank;
    cand.index = K + k * f->C + c;
    cand.known = 1;
    if (w) {  /* the unfinished word it leaves: one probe of a hash set */
        int64_t h = (int64_t)((uint64_t)(ends ? 0 : s->phash) * (uint64_t)w->char_power[c]
                              + (uint64_t)w->char_hash[c]);
        int64_t len = (ends ? 0 : s->plen) + w->char_len[c];
        cand.known = FN(beam_known)(w, f->prefixes, h, len);
        if (skip_known && cand.known) return;
        if (!cand.known) cand.rank += FN(beam_penalty)(w, len);
        /* A forbidden word (unk_score -inf), ended or begun: never a beam. */
        if (cand.rank == BEAM_NEG_INF) return;
    }
    const FN(beam_cand) *floor = FN(frame_floor)(f);
    if (floor && !FN(beam_before)(&cand, floor)) return;
    /* An extension already in the beam was merged into it. */
    int64_t child = beam_mix(s->hash, c);
    uint64_t mask = (uint64_t)(f->map_size - 1);
    for (uint64_t j = (uint64_t)beam_mix(child, 0) & mask; f->map[j] >= 0; j = (j + 1) & mask)
        if (f->cur[f->map[j]].hash == child && f->cur[f->map[j]].len == s->len + 1) return;
    f->last_rank = cand.rank;
    FN(heap_push)(f->heap, &f->n_heap, K, cand.rank, cand.index, cand.known);
}

/* The successors' heap of the frontier: a max-heap by bound (rank field), ties by lower
 * beam index. */
static void FN(front_push)(FN(beam_cand) *h, int64_t *n, REAL bound, int64_t index) {
    FN(beam_cand) c;
    c.rank = bound;
    c.index = index;
    c.known = 0;
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t up = (i - 1) / 2;
        if (!FN(beam_before)(&c, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = c;
}

/* Whether slot s's word-continuing extensions split into its known continuations and
 * the rest (then bounded with the unknown-prefix penalty): where the table exists and
 * its prefix, known, has an entry. Looks the entry up once per slot. */
static inline int FN(beam_splits)(const struct ctc_words *w, FN(beam_slot) *s) {
    if (!w || !w->n_child_keys || !s->known_prefix) return 0;
    if (s->ch_n < 0) {
        int64_t j = beam_find(w->child_keys, w->n_child_keys, s->plen > 0 ? s->phash : 0);
        s->ch_lo = j < 0 ? -1 : w->child_start[j];
        s->ch_n = j < 0 ? 0 : w->child_start[j + 1] - w->child_start[j];
    }
    return s->ch_lo >= 0;
}

/* Slot s's best known continuation among the frame's tokens that comes after token
 * prev in the lists' order (prev < 0: the best), or -1. */
static int64_t FN(child_next)(const FN(beam_frame) *f, const FN(beam_slot) *s, int64_t prev) {
    /* Higher e, then lower id (token_before for list 0, whose tokens are never
     * lifted), with NaN taken as -inf: a strict total order, so each call moves on and
     * a beam's continuations end (a NaN once made it return prev again, forever). */
    const int64_t *tokens = f->w->child_tokens + s->ch_lo;
    const REAL *e = f->e;
    REAL e_prev = prev < 0 ? (REAL)INFINITY : (e[prev] == e[prev] ? e[prev] : BEAM_NEG_INF);
    REAL e_best = BEAM_NEG_INF;
    int64_t best = -1;
    for (int64_t j = 0; j < s->ch_n; ++j) {
        int64_t c = tokens[j];
        REAL ec = e[c] == e[c] ? e[c] : BEAM_NEG_INF;
        if (!f->in_list[c] || ec > e_prev || (ec == e_prev && c <= prev)) continue;
        if (best < 0 || ec > e_best || (ec == e_best && c < best)) best = c, e_best = ec;
    }
    return best;
}

/* Removes the frontier's best into *top. */
static void FN(front_pop)(FN(beam_cand) *h, int64_t *n, FN(beam_cand) *top) {
    *top = h[0];
    FN(beam_cand) last = h[--*n];
    int64_t i = 0;
    for (;;) {  /* sift the last one down from the top */
        int64_t l = 2 * i + 1, r = l + 1, best = -1;
        const FN(beam_cand) *at = &last;
        if (l < *n && FN(beam_before)(&h[l], at)) { best = l; at = &h[l]; }
        if (r < *n && FN(beam_before)(&h[r], at)) best = r;
        if (best < 0) break;
        h[i] = h[best];
        i = best;
    }
    if (*n) h[i] = last;
}

/* The search's options and what follows from them, shared by its examples. */
typedef struct {
    const struct ctc_words *w;
    int64_t C, blank, K, V;
    double token_min_logp, beam_threshold;
    int64_t depth, H, tdepth, tofs, row, map_size;
    REAL delta_bound, token_bound;
    FN(beam_set) prefix_set;
} FN(beam_search);

/* One thread's scratch for the frames of any example. */
typedef struct {
    FN(beam_slot) *next;
    int64_t *next_rows, *map, *pidx, *order, *next_i, *lists;
    REAL *up, *stay_b, *stay_nb, *total, *stay_tot;
    FN(beam_cand) *front, *runs, *succ, *heap, *stays, *merged;
    uint8_t *in_list;
    int *splits, *wins, *alive;
} FN(beam_scratch);

/* One example's search between frames: its beams (cur, rows, live), the frames
 * searched, and its history. hist holds, for each frame from base on, each slot's
 * link: its slot at the frame before and the token it emitted (-1: none). The
 * frames before base are committed: every beam descends from one slot at frame
 * base - 1, so their tokens (commit_tok, at frames commit_time) begin every hypothesis
 * and their history is freed (ctc_beam_stream_feed). */
typedef struct {
    FN(beam_slot) *cur;
    int64_t *rows, live, frames, base;
    int64_t tried;  /* the frames searched at the last walk for a commit */
    int64_t shown;  /* the frames searched when partial() last showed it (-1: never) */
    /* The best beam's tokens after the committed ones, and their frames (best_len of
     * them), walked as each chunk ends, while its history is in the cache. */
    int64_t *best_tok, *best_time, best_len, best_cap;
    /* That path's slot at each frame best_from <= t < best_upto (best_slot[t -
     * best_from]): a later walk stops where it meets it. */
    int64_t *best_slot, best_from, best_upto, slot_cap;
    beam_link *hist;
    int64_t hist_cap;
    /* The allocations the history is in: it begins skip frames into them (a commit
     * moves it on rather than moving the rows back). */
    beam_link *hist_mem;
    int64_t skip;
    int64_t *commit_tok, *commit_time, n_commit, commit_cap;
    /* What partial() last showed past the tokens then committed (seen_from of them):
     * the next call sends only where the path now departs from it (at keep). */
    int64_t *seen_tok, *seen_time, seen_len, seen_cap, seen_from;
} FN(beam_example);

static int FN(search_setup)(FN(beam_search) *s, const struct ctc_words *w, int64_t C,
                            int64_t blank, int64_t K, int64_t V, double token_min_logp,
                            double beam_threshold) {
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->C = C, s->blank = blank, s->K = K, s->V = V;
    s->token_min_logp = token_min_logp, s->beam_threshold = beam_threshold;
    s->depth = (w && w->lm.order > 0) ? w->lm.order - 1 : 0;
    s->H = (w && w->phrase_len > 1) ? w->phrase_len - 1 : 0;
    s->tdepth = (w && w->tlm.order > 0) ? w->tlm.order - 1 : 0;
    s->tofs = s->depth + s->H + s->depth;  /* the token model's context in a row */
    s->row = s->tofs + s->tdepth;  /* ctx, recent, ctx after completion, token ctx */
    s->map_size = 1;
    while (s->map_size < 2 * K) s->map_size <<= 1;
    /* Every extension appends a token: the token model adds at most this. */
    s->token_bound = (w && w->tlm.order > 0) ? (REAL)(w->tlm_weight * w->tlm_max) : 0;
    if (w) {
        /* Each term at its largest: a negative hotword weight adds at most 0 (no
         * phrase completed), and the LM at most lm_max (0 for a normalised model). */
        double hot = w->hotword_weight > 0 ? w->hotword_weight : 0;
        double lm = w->lm_max > 0 ? w->lm_weight * w->lm_max : 0;
        double unk = w->unk_score > 0 ? w->unk_score : 0;
        double bound = w->word_score + hot * (double)w->phrase_len + lm + unk;
        s->delta_bound = (REAL)(bound > 0 ? bound : 0);
        if (w->lm_weight < 0) s->delta_bound = (REAL)INFINITY;  /* no bound: always look up */
    }
    return w && w->n_prefixes ? FN(set_build)(&s->prefix_set, w->prefixes, w->n_prefixes) : 0;
}

static void FN(search_free)(FN(beam_search) *s) {
    free(s->prefix_set.slots);
    free(s->prefix_set.used);
}

static void FN(scratch_free)(FN(beam_scratch) *x) {
    free(x->next); free(x->next_rows); free(x->map); free(x->pidx); free(x->order);
    free(x->next_i); free(x->lists); free(x->up); free(x->front); free(x->runs);
    free(x->succ); free(x->in_list); free(x->splits); free(x->stays); free(x->merged);
    free(x->stay_b); free(x->stay_nb); free(x->total); free(x->stay_tot); free(x->wins);
    free(x->alive); free(x->heap);
}

static int FN(scratch_alloc)(FN(beam_scratch) *x, const FN(beam_search) *s) {
    const int64_t K = s->K, C = s->C, row = s->row;
    x->next = calloc(K, sizeof(*x->next));
    x->next_rows = calloc(K * (row ? row : 1), sizeof(int64_t));
    x->map = malloc(sizeof(int64_t) * s->map_size);
    x->pidx = malloc(sizeof(int64_t) * K);
    x->order = malloc(sizeof(int64_t) * C);
    x->next_i = malloc(sizeof(int64_t) * 3 * K);
    x->lists = malloc(sizeof(int64_t) * 2 * C);
    x->up = malloc(sizeof(REAL) * 3 * K);
    x->front = malloc(sizeof(FN(beam_cand)) * 3 * K);
    x->runs = malloc(sizeof(FN(beam_cand)) * 2 * K);
    x->succ = malloc(sizeof(FN(beam_cand)) * 3 * K);
    x->in_list = calloc(C ? C : 1, 1);
    x->splits = malloc(sizeof(int) * K);
    x->stay_b = malloc(sizeof(REAL) * K);
    x->stay_nb = malloc(sizeof(REAL) * K);
    x->total = malloc(sizeof(REAL) * K);
    x->stay_tot = malloc(sizeof(REAL) * K);
    x->wins = malloc(sizeof(int) * K);
    x->alive = malloc(sizeof(int) * K);
    x->heap = malloc(sizeof(FN(beam_cand)) * K);
    x->stays = malloc(sizeof(FN(beam_cand)) * K);
    x->merged = malloc(sizeof(FN(beam_cand)) * K);
    return !x->next || !x->next_rows || !x->map || !x->pidx || !x->order || !x->next_i
           || !x->lists || !x->up || !x->front || !x->runs || !x->succ || !x->in_list
           || !x->splits || !x->stay_b || !x->stay_nb || !x->total || !x->stay_tot
           || !x->wins || !x->alive || !x->heap || !x->stays || !x->merged ? -1 : 0;
}

static void FN(example_free)(FN(beam_example) *ex) {
    free(ex->cur); free(ex->rows); free(ex->hist_mem);
    free(ex->commit_tok); free(ex->commit_time); free(ex->best_tok); free(ex->best_time);
    free(ex->best_slot); free(ex->seen_tok); free(ex->seen_time);
    memset(ex, 0, sizeof(*ex));
}

/* The empty prefix, before the first frame (its buffers kept where it had some). */
static int FN(example_start)(FN(beam_example) *ex, const FN(beam_search) *sr) {
    const int64_t K = sr->K, row = sr->row, depth = sr->depth, tdepth = sr->tdepth;
    const int64_t tofs = sr->tofs;
    if (!ex->cur) ex->cur = malloc(sizeof(*ex->cur) * K);
    if (!ex->rows) ex->rows = malloc(sizeof(int64_t) * K * (row ? row : 1));
    if (!ex->cur || !ex->rows) return -1;
    FN(beam_slot) *cur = ex->cur;
    int64_t *rows = ex->rows;
    for (int64_t k = 0; k < K; ++k) {
        memset(&cur[k], 0, sizeof(cur[k]));
        cur[k].pb = cur[k].pnb = cur[k].tot = BEAM_NEG_INF;
        cur[k].ch_n = -1;
        cur[k].last = -1;
        cur[k].known_prefix = 1;
    }
    memset(rows, 0, sizeof(int64_t) * K * (row ? row : 1));
    cur[0].pb = cur[0].tot = 0;
    for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < depth; ++i) rows[k * row + i] = -1;
    if (depth) for (int64_t k = 0; k < K; ++k) rows[k * row + depth - 1] = sr->w->lm.bos;
    for (int64_t k = 0; k < K && tdepth; ++k) {
        for (int64_t i = 0; i < tdepth; ++i) rows[k * row + tofs + i] = -1;
        rows[k * row + tofs + tdepth - 1] = sr->w->tlm.bos;
    }
    ex->live = 1;  /* slots 0..live-1 hold beams, best first (after frame 0) */
    ex->frames = ex->base = ex->tried = 0;
    ex->shown = -1;
    ex->n_commit = ex->best_len = ex->best_from = ex->best_upto = 0;
    ex->seen_len = ex->seen_from = 0;
    return 0;
}

/* Room in ex's history for n more frames. A commit moves the history's start on past
 * the rows it frees; the rows held move back to the front of the allocation only when
 * the room after them runs out, and the allocation is then made at least twice what
 * is needed (grown by half again, at least 64 frames): a row is moved once for at
 * least as many frames searched since the last move, O(K) a frame. */
static int FN(history_reserve)(FN(beam_example) *ex, int64_t K, int64_t n) {
    const int64_t held = ex->frames - ex->base, need = held + n;
    if (ex->skip + need <= ex->hist_cap) return 0;
    if (ex->skip) {
        memmove(ex->hist_mem, ex->hist, sizeof(beam_link) * held * K);
        ex->hist = ex->hist_mem, ex->skip = 0;
    }
    if (2 * need <= ex->hist_cap) return 0;
    int64_t cap = ex->hist_cap + ex->hist_cap / 2;
    if (cap < 2 * need) cap = 2 * need;
    if (cap < 64) cap = 64;
    beam_link *links = realloc(ex->hist_mem, sizeof(beam_link) * cap * K);
    if (!links) return -1;
    ex->hist_mem = ex->hist = links;
    ex->hist_cap = cap;
    return 0;
}

/* n more frames lp (n, C) of example ex, its history rows written. Returns 0, or -1
 * when memory ran out. */
static int FN(example_frames)(const FN(beam_search) *sr, FN(beam_scratch) *x,
                              FN(beam_example) *ex, const REAL *lp, int64_t n) {
    if (n <= 0) return 0;
    const int64_t K = sr->K;
    if (FN(history_reserve)(ex, K, n)) return -1;
    const struct ctc_words *w = sr->w;
    const int64_t C = sr->C, blank = sr->blank, V = sr->V;
    const int64_t depth = sr->depth, H = sr->H, tofs = sr->tofs, tdepth = sr->tdepth;
    const int64_t row = sr->row, map_size = sr->map_size;
    const double token_min_logp = sr->token_min_logp, beam_threshold = sr->beam_threshold;
    const REAL delta_bound = sr->delta_bound, token_bound = sr->token_bound;
    FN(beam_set) prefix_set = sr->prefix_set;
    FN(beam_slot) *cur = ex->cur, *next = x->next;
    int64_t *rows = ex->rows, *next_rows = x->next_rows;
    int64_t *map = x->map, *pidx = x->pidx, *order = x->order, *next_i = x->next_i;
    int64_t *lists = x->lists;
    REAL *up = x->up, *stay_b = x->stay_b, *stay_nb = x->stay_nb, *total = x->total;
    REAL *stay_tot = x->stay_tot;
    FN(beam_cand) *front = x->front, *runs = x->runs, *succ = x->succ, *heap = x->heap;
    FN(beam_cand) *stays = x->stays, *merged = x->merged;
    uint8_t *in_list = x->in_list;
    int *splits = x->splits, *wins = x->wins, *alive = x->alive;
    int64_t live = ex->live;
    beam_link *hist = ex->hist + (ex->frames - ex->base) * K;
    for (int64_t t = 0; t < n; ++t) {
        const REAL *e = lp + t * C;
        /* The beams by hash, for merges and for extensions already present. */
        for (int64_t i = 0; i < map_size; ++i) map[i] = -1;
        for (int64_t k = 0; k < live; ++k) {
            alive[k] = cur[k].pb != BEAM_NEG_INF || cur[k].pnb != BEAM_NEG_INF;
            if (!alive[k]) continue;
            uint64_t i = (uint64_t)beam_mix(cur[k].hash, 0) & (uint64_t)(map_size - 1);
            while (map[i] >= 0) i = (i + 1) & (uint64_t)(map_size - 1);
            map[i] = k;
        }
        for (int64_t k = 0; k < live; ++k) {
            FN(beam_slot) *s = &cur[k];
            total[k] = s->tot;
            stay_b[k] = total[k] + e[blank];
            stay_nb[k] = s->last >= 0 ? s->pnb + e[s->last] : BEAM_NEG_INF;
        }
        /* A prefix whose parent is in the beam is reached from it by its last token
         * too: merge the two (log-sum-exp); the more probable path's history wins. */
        for (int64_t k = 0; k < live; ++k) {
            pidx[k] = -1;
            wins[k] = 0;
            if (!alive[k] || cur[k].len == 0) continue;
            uint64_t i = (uint64_t)beam_mix(cur[k].parent, 0) & (uint64_t)(map_size - 1);
            for (; map[i] >= 0; i = (i + 1) & (uint64_t)(map_size - 1)) {
                int64_t p = map[i];
                if (cur[p].hash == cur[k].parent && cur[p].len + 1 == cur[k].len) {
                    pidx[k] = p;
                    break;
                }
            }
            if (pidx[k] < 0) continue;
            FN(beam_slot) *p = &cur[pidx[k]];
            REAL via = (p->last == cur[k].last ? p->pb : total[pidx[k]]) + e[cur[k].last];
            wins[k] = via > FN(lse2)(stay_b[k], stay_nb[k]);
            stay_nb[k] = FN(lse2)(stay_nb[k], via);
        }
        /* The candidate tokens: all but the blank, by log-probability (a word
         * boundary first when the LM may favour it and not every token competes),
         * the first V of them; split by kind. */
        int64_t width;
        if (V >= C - 1) {  /* every token competes: ranked lazily, as far as needed */
            width = 0;
            for (int64_t c = 0; c < C; ++c) if (c != blank) order[width++] = c;
        } else {
            width = FN(candidate_tokens)(w, e, C, blank, V, order);
        }
        FN(beam_frame) f = {w, cur, rows, row, depth, H, total, e, {lists, lists + C},
                            {0, 0}, {0, 0}, K, V, C, map, map_size, heap, 0, NULL,
                            delta_bound, (REAL)token_min_logp, BEAM_NEG_INF, &prefix_set,
                            in_list};
        /* A token below token_min_logp extends no beam: it leaves the lists here,
         * which keeps them to the frame's one or two likely tokens when pruning. */
        REAL e_mag = 0;  /* the largest finite |log-probability| in the lists */
        for (int64_t v = 0; v < width; ++v) {
            if (e[order[v]] < (REAL)token_min_logp) continue;
            int kind = w && w->boundary[order[v]] ? 1 : 0;
            f.list[kind][f.count[kind]++] = order[v];
            REAL mag = e[order[v]] < 0 ? -e[order[v]] : e[order[v]];
            if (mag > e_mag && mag < (REAL)INFINITY) e_mag = mag;
        }
        if (V < C - 1) f.ranked[0] = f.count[0], f.ranked[1] = f.count[1];  /* sorted */
        int children = w && w->n_child_keys > 0;
        if (children) for (int64_t v = 0; v < f.count[0]; ++v) in_list[f.list[0][v]] = 1;
        /* The stays, best first: the slots are in last frame's order, so the
         * insertion sort has little to move. */
        int64_t n_stay = 0;
        for (int64_t k = 0; k < live; ++k) {
            if (!alive[k]) continue;
            REAL stay = stay_tot[k] = FN(lse2)(stay_b[k], stay_nb[k]);
            if (stay == BEAM_NEG_INF) continue;
            FN(beam_cand) c;
            c.rank = stay + FN(beam_rank_extra)(w, &cur[k]);
            c.index = k;
            c.known = 1;
            int64_t j = n_stay++;
            while (j > 0 && FN(beam_before)(&c, &stays[j - 1])) {
                stays[j] = stays[j - 1];
                --j;
            }
            stays[j] = c;
        }
        f.kth_stay = n_stay >= K ? &stays[K - 1] : NULL;
        /* Extensions in descending order of an upper bound of their rank, from a
         * frontier holding each beam's next token of each kind (the bound is the
         * beam's for that kind plus the token's log-probability, and each list is
         * in descending log-probability): the search stops when the best bound
         * left cannot beat the K-th best rank, so about K are looked at however
         * spread the beams' ranks are. A word's end adds at most delta_bound
         * (word score, positive hotword bonus, LM bound); any other token
         * leaves an unfinished word that begins no known word if its beam's did
         * (the known prefixes are closed under shortening): a certain penalty.
         * The frontier is each kind's first-token bounds, sorted once (the slots
         * come in last frame's rank order, so the insertion sort moves little),
         * merged with a heap of the successors of those popped: a frame pops about
         * ten, and a heap of every beam's entry cost more than the search (the
         * order popped is the same: every entry's index is distinct).
         * With the table of known continuations, a beam whose unfinished word is
         * known has a third list (kind 2): the tokens that keep it known, bounded
         * without the penalty; the shared list (kind 0) is then bounded with it,
         * as every other token there leaves a prefix no word begins with. Without
         * it, at beam 100 with an LM, most extensions tried were such prefixes,
         * each popped and rejected. Entry index: 3 k + kind. */
        FN(beam_cand) *init[3] = {front, front + K, front + 2 * K};
        int64_t n_init[3] = {0, 0, 0}, at[3] = {0, 0, 0}, n_other[2] = {0, 0};
        int64_t n_front = 0;
        for (int kind = 0; kind < 2; ++kind)
            if (f.count[kind]) FN(rank_upto)(&f, kind, 0);
        for (int64_t k = 0; k < live; ++k) {
            next_i[3 * k] = next_i[3 * k + 1] = next_i[3 * k + 2] = 0;
            splits[k] = 0;
            if (!alive[k]) continue;
            FN(beam_slot) *s = &cur[k];
            REAL beam_x = FN(beam_extra)(w, s);
            /* Every word-continuing extension of a beam whose word is unknown (or,
             * where it splits, not among its known continuations) leaves an unknown
             * word at least as long: this penalty at least. */
            REAL pen = w ? FN(beam_penalty)(w, s->plen) : 0;
            /* A bound sums its terms in another order than the rank it bounds, so
             * it may round below it by a few units in the last place: each bound
             * is raised by 4 epsilon times the terms' magnitudes, without which a
             * candidate whose rank met the floor exactly was cut (same terms for
             * the beam's every token, so each list stays in order). */
            REAL slack = (REAL)4 * BEAM_EPS
                         * (FN(beam_abs)(total[k]) + FN(beam_abs)(beam_x) + e_mag
                            + (pen > BEAM_NEG_INF ? FN(beam_abs)(pen) : 0)
                            + (delta_bound < (REAL)INFINITY ? delta_bound : 0)
                            + FN(beam_abs)(token_bound));
            REAL extra = total[k] + beam_x + token_bound + slack;
            splits[k] = children && FN(beam_splits)(w, s);
            up[3 * k] = extra + ((w && (!s->known_prefix || splits[k])) ? pen : 0);
            up[3 * k + 1] = extra + (w && s->plen > 0 ? delta_bound : 0);
            up[3 * k + 2] = extra;
            /* A known word's continuations enter bounded by the frame's best word-
             * continuing token (next_i -1: not looked at yet); the first pop finds
             * the beam's own best, most are never popped. */
            next_i[3 * k + 2] = -1;
            for (int kind = 0; kind < 3; ++kind) {
                if (!f.count[kind == 2 ? 0 : kind] || (kind == 2 && !splits[k])) continue;
                FN(beam_cand) c;
                c.rank = up[3 * k + kind] + e[f.list[kind == 2 ? 0 : kind][0]];
                c.index = 3 * k + kind;
                c.known = 0;
                /* The slots' order is last frame's rank, which has the unknown-prefix
                 * penalty where these bounds may not: the beams with an unknown
                 * word go to a second run, each run nearly sorted, merged below. */
                int other = kind < 2 && w && !s->known_prefix;
                FN(beam_cand) *run = other ? runs + kind * K : init[kind];
                int64_t j = other ? n_other[kind]++ : n_init[kind]++;
                while (j > 0 && FN(beam_before)(&c, &run[j - 1])) {
                    run[j] = run[j - 1];
                    --j;
                }
                run[j] = c;
            }
        }
        for (int kind = 0; kind < 2; ++kind) {  /* merged from the back, in place */
            FN(beam_cand) *a = init[kind], *b = runs + kind * K;
            int64_t i = n_init[kind] - 1, j = n_other[kind] - 1;
            n_init[kind] += n_other[kind];
            for (int64_t out = n_init[kind] - 1; j >= 0; --out)
                a[out] = (i >= 0 && FN(beam_before)(&b[j], &a[i])) ? a[i--] : b[j--];
        }
        /* With beam_threshold, nothing below the best rank so far by more than it
         * can stay (the best only rises); with token_min_logp, a list ends at its
         * first token below it. */
        REAL best = n_stay ? stays[0].rank : BEAM_NEG_INF;
        for (;;) {
            int from = -1;
            const FN(beam_cand) *head = NULL;
            for (int kind = 0; kind < 3; ++kind)
                if (at[kind] < n_init[kind]
                    && (!head || FN(beam_before)(&init[kind][at[kind]], head))) {
                    head = &init[kind][at[kind]];
                    from = kind;
                }
            if (n_front && (!head || FN(beam_before)(&succ[0], head))) from = 3;
            if (from < 0) break;
            FN(beam_cand) top;
            if (from == 3) FN(front_pop)(succ, &n_front, &top);
            else top = init[from][at[from]++];
            const FN(beam_cand) *floor = FN(frame_floor)(&f);
            if (floor && top.rank < floor->rank) break;
            if (top.rank < best - (REAL)beam_threshold) break;
            int64_t k = top.index / 3, kind = top.index % 3, i = next_i[top.index];
            if (kind == 2 && i < 0) {  /* its first pop: the beam's own best */
                i = next_i[top.index] = FN(child_next)(&f, &cur[k], -1);
                if (i < 0) continue;
                if (up[top.index] + e[i] < top.rank) {  /* a lower bound: back in line */
                    FN(front_push)(succ, &n_front, up[top.index] + e[i], top.index);
                    continue;
                }
            }
            int64_t c = kind == 2 ? i : f.list[kind][i];
            if (e[c] < (REAL)token_min_logp) continue;
            f.last_rank = BEAM_NEG_INF;
            FN(beam_try)(&f, k, kind == 1, c, kind == 0 && splits[k]);
            if (f.last_rank > best) best = f.last_rank;
            if (kind == 2) {
                int64_t after = FN(child_next)(&f, &cur[k], c);
                if (after >= 0) {
                    next_i[top.index] = after;
                    FN(front_push)(succ, &n_front, up[top.index] + e[after], top.index);
                }
            } else if (++next_i[top.index] < f.count[kind]) {
                FN(rank_upto)(&f, (int)kind, i + 1);
                FN(front_push)(succ, &n_front, up[top.index] + e[f.list[kind][i + 1]],
                               top.index);
            }
        }
        if (children) for (int64_t v = 0; v < f.count[0]; ++v) in_list[f.list[0][v]] = 0;
        /* The extensions kept, best first (pop the worst to the back, one by one),
         * then merged with the stays: the K best of both. */
        int64_t n_ext = f.n_heap;
        for (int64_t m = n_ext; m > 1; --m) {
            FN(beam_cand) worst = heap[0];
            heap[0] = heap[m - 1];
            int64_t i = 0;
            for (;;) {
                int64_t l = 2 * i + 1, r = l + 1, top = i;
                if (l < m - 1 && FN(beam_before)(&heap[top], &heap[l])) top = l;
                if (r < m - 1 && FN(beam_before)(&heap[top], &heap[r])) top = r;
                if (top == i) break;
                FN(beam_cand) tmp = heap[i]; heap[i] = heap[top]; heap[top] = tmp;
                i = top;
            }
            heap[m - 1] = worst;
        }
        FN(beam_cand) *sorted = merged;
        int64_t n_heap = 0, a = 0, x = 0;
        while (n_heap < K && (a < n_stay || x < n_ext)) {
            if (x >= n_ext || (a < n_stay && FN(beam_before)(&stays[a], &heap[x])))
                sorted[n_heap++] = stays[a++];
            else
                sorted[n_heap++] = heap[x++];
        }
        if (beam_threshold < INFINITY && n_heap) {
            REAL floor = sorted[0].rank - (REAL)beam_threshold;
            while (n_heap > 0 && sorted[n_heap - 1].rank < floor) --n_heap;
        }
        beam_link *link = hist + t * K;
        for (int64_t n = 0; n < n_heap; ++n) {  /* the live slots: a prefix */
            FN(beam_slot) *d = &next[n];
            int64_t *drow = next_rows + n * row;
            int64_t index = sorted[n].index;
            if (index < K) {  /* a stay: its own state, merged */
                *d = cur[index];
                d->pb = stay_b[index];
                d->pnb = stay_nb[index];
                d->tot = stay_tot[index];
                if (row) memcpy(drow, rows + index * row, sizeof(int64_t) * row);
                link[n].src = (int32_t)(wins[index] ? pidx[index] : index);
                link[n].tok = (int32_t)(wins[index] ? cur[index].last : -1);
                continue;
            }
            int64_t k = (index - K) / C, c = (index - K) % C;
            FN(beam_slot) *s = &cur[k];
            if (w && w->boundary[c] && s->plen > 0)  /* its score, before the copy */
                FN(beam_completion)(w, s, rows + k * row, rows + k * row + depth,
                                    rows + k * row + depth + H);
            *d = *s;
            if (row) memcpy(drow, rows + k * row, sizeof(int64_t) * row);
            d->pb = BEAM_NEG_INF;
            d->pnb = d->tot = (c == s->last ? s->pb : total[k]) + e[c];
            d->len = s->len + 1;
            d->last = c;
            d->parent = s->hash;
            d->hash = beam_mix(s->hash, c);
            d->ch_n = -1;  /* a new unfinished word: its continuations looked up anew */
            link[n].src = (int32_t)k;
            link[n].tok = (int32_t)c;
            if (w && w->tlm.order > 0) {  /* the token appended, scored */
                d->tlm += FN(beam_token_lp)(w, rows + k * row + tofs, c);
                if (tdepth) {
                    memmove(drow + tofs, drow + tofs + 1, sizeof(int64_t) * (tdepth - 1));
                    drow[tofs + tdepth - 1] = w->tlm_ids[c];
                }
            }
            if (w) {
                int boundary = w->boundary[c] != 0;
                if (boundary && s->plen > 0) {  /* the unfinished word ends */
                    d->lm += s->lm_word;
                    d->words += 1;
                    d->unkc += s->ucost;
                    d->hot += s->bonus;
                    if (depth) memcpy(drow, drow + depth + H, sizeof(int64_t) * depth);
                    if (H) {
                        memmove(drow + depth, drow + depth + 1, sizeof(int64_t) * (H - 1));
                        drow[depth + H - 1] = s->phash;
                    }
                }
                int64_t base_hash = boundary ? 0 : s->phash;
                int64_t base_len = boundary ? 0 : s->plen;
                d->phash = (int64_t)((uint64_t)base_hash * (uint64_t)w->char_power[c]
                                     + (uint64_t)w->char_hash[c]);
                d->plen = base_len + w->char_len[c];
                d->known_prefix = sorted[n].known;
                d->ready = 0;  /* a new unfinished word: scored when it may end */
            }
        }
        live = n_heap;
        FN(beam_slot) *swap = cur; cur = next; next = swap;
        int64_t *swap_rows = rows; rows = next_rows; next_rows = swap_rows;
    }
    ex->cur = cur, x->next = next, ex->rows = rows, x->next_rows = next_rows;
    ex->live = live;
    ex->frames += n;
    return 0;
}

/* The tokens live slot k's path (now) emitted after the committed ones, oldest first,
 * and their frames, into tokens and times (room for frames - base). Returns how many. */
static int64_t FN(example_walk)(const FN(beam_example) *ex, int64_t K, int64_t k,
                                int64_t *tokens, int64_t *times) {
    int64_t length = 0, slot = k;
    for (int64_t t = ex->frames - 1; t >= ex->base; --t) {  /* tokens come out last first */
        const beam_link link = ex->hist[(t - ex->base) * K + slot];
        if (link.tok >= 0) tokens[length] = link.tok, times[length++] = t;
        slot = link.src;
    }
    for (int64_t i = 0, j = length - 1; i < j; ++i, --j) {
        int64_t a = tokens[i]; tokens[i] = tokens[j]; tokens[j] = a;
        a = times[i]; times[i] = times[j]; times[j] = a;
    }
    return length;
}

/* The path of live slot k (now): its tokens and their frames, oldest first, the
 * committed ones first, into tokens and times (room for n_commit + frames - base).
 * Returns its length. */
static int64_t FN(example_path)(const FN(beam_example) *ex, int64_t K, int64_t k,
                                int64_t *tokens, int64_t *times) {
    const int64_t n = ex->n_commit;
    if (n) {  /* (no committed tokens: their buffers may be NULL, not memcpy's) */
        memcpy(tokens, ex->commit_tok, sizeof(int64_t) * n);
        memcpy(times, ex->commit_time, sizeof(int64_t) * n);
    }
    return n + FN(example_walk)(ex, K, k, tokens + n, times + n);
}

/* How many frames ahead of a walk back its rows are asked for: a frame's step is a few
 * nanoseconds, a row from memory some hundred. */
#define BEAM_WALK_AHEAD 8

/* Asks for frame t's history row (each slot's link) ahead of a walk back reaching it:
 * a walk's next slot comes from the row it reads, so its reads wait one after the
 * other, and rows written chunks ago are out of the cache (the other examples' chunks
 * came between). Rows are contiguous, so the address is known frames ahead. Only a
 * row's first 64 slots: the beams' ancestors are mostly the better-ranked slots, and at
 * a wide beam a whole row a frame would cost more than the walk's few reads. */
static inline void FN(history_prefetch)(const FN(beam_example) *ex, int64_t K, int64_t t) {
    if (t < 0) return;
    const char *row = (const char *)(ex->hist + t * K);
    const int64_t bytes = (K < 64 ? K : 64) * (int64_t)sizeof(beam_link);
    for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(row + i);
}

/* Commits what every live beam agrees on: walking the history back from the live
 * slots, the latest frame at whose end they all descend from one slot; the tokens of
 * that slot's path up to there are appended to the committed ones, and the history of
 * those frames is freed (moved out). mark: scratch of K ints. Returns 0, or -1 when
 * memory ran out (nothing is changed then). */
static int FN(example_commit)(FN(beam_example) *ex, int64_t K, int *mark, int64_t horizon) {
    int64_t held = ex->frames - ex->base, n = 0, agreed = -1, slot = 0;
    /* A walk costs up to K slots a frame held: it runs once a quarter of the history
     * held has come since the last, and at least 32 frames, so its cost is O(K) a frame
     * however long the beams disagree (with a horizon, also whenever more than it is
     * held, so the history held stays below it and a chunk). The 32: a walk every
     * 16-frame chunk cost the stream 3% of its search. */
    const int64_t every = (held + 3) / 4 > 32 ? (held + 3) / 4 : 32;
    if (ex->frames - ex->tried < every && (horizon <= 0 || held <= horizon)) return 0;
    ex->tried = ex->frames;
    int64_t *set = malloc(sizeof(int64_t) * (K ? K : 1));
    if (!set) return -1;
    if (horizon > 0 && held > horizon && ex->live > 1) {
        /* Beams that left the best one's path more than horizon frames ago are
         * dropped: their ancestor at the end of frame frames - horizon - 1 is not the
         * best beam's (slot 0's). They hold back every commit, and a beam that far
         * behind rarely comes back (it can: the caller asked for this bound). */
        for (int64_t k = 0; k < ex->live; ++k) set[k] = k;
        for (int64_t t = held - 1; t >= held - horizon; --t) {
            FN(history_prefetch)(ex, K, t - BEAM_WALK_AHEAD);
            for (int64_t k = 0; k < ex->live; ++k) set[k] = ex->hist[t * K + set[k]].src;
        }
        for (int64_t k = 1; k < ex->live; ++k)
            if (set[k] != set[0]) ex->cur[k].pb = ex->cur[k].pnb = ex->cur[k].tot = BEAM_NEG_INF;
    }
    for (int64_t k = 0; k < ex->live; ++k)  /* the live beams (a dropped one is not) */
        if (ex->cur[k].pb != BEAM_NEG_INF || ex->cur[k].pnb != BEAM_NEG_INF) set[n++] = k;
    for (int64_t k = 0; k < K; ++k) mark[k] = 0;
    if (n == 1) agreed = held - 1, slot = set[0];  /* one beam: all of its path */
    /* set: the slots at the end of frame base + t + 1 that the live beams descend from */
    for (int64_t t = held - 1; t >= 0 && n > 1; --t) {
        FN(history_prefetch)(ex, K, t - BEAM_WALK_AHEAD);
        int64_t m = 0;
        for (int64_t j = 0; j < n; ++j) {
            int64_t p = ex->hist[t * K + set[j]].src;
            if (!mark[p]) { mark[p] = 1; set[m++] = p; }
        }
        for (int64_t j = 0; j < m; ++j) mark[set[j]] = 0;
        n = m;
        if (n == 1) { agreed = t - 1; slot = set[0]; }  /* one slot at the end of frame t-1 */
    }
    free(set);
    if (n == 0) {  /* no beam left: nothing can be returned past the committed tokens */
        ex->base = ex->frames;
        return 0;
    }
    if (n != 1 || agreed < 0) return 0;
    /* Frames base .. base + agreed: the path of `slot` through them, committed. */
    int64_t count = 0, s = slot;
    for (int64_t t = agreed; t >= 0; --t) {
        count += ex->hist[t * K + s].tok >= 0;
        s = ex->hist[t * K + s].src;
    }
    if (beam_grow_pair(&ex->commit_tok, &ex->commit_time, &ex->commit_cap,
                       ex->n_commit + count)) return -1;
    int64_t at = ex->n_commit + count;
    s = slot;
    for (int64_t t = agreed; t >= 0; --t) {
        int64_t tok = ex->hist[t * K + s].tok;
        if (tok >= 0) { --at; ex->commit_tok[at] = tok; ex->commit_time[at] = ex->base + t; }
        s = ex->hist[t * K + s].src;
    }
    ex->n_commit += count;
    const int64_t drop = agreed + 1;  /* freed: history_reserve reuses their room */
    ex->hist += drop * K, ex->skip += drop;
    ex->base += drop;
    return 0;
}

/* ex's best beam now (slot 0): its tokens after the committed ones and their frames,
 * into best_tok and best_time. The walk back stops where it meets the path the last
 * walk found (the same slot at a frame it covered): from there back the two paths are
 * one, and that one's tokens are kept. A walk reads a frame's row out of the cache, so
 * this reads the chunk's frames and the few where the best path changed, not all the
 * history held. Returns 0, or -1 when memory ran out. */
static int FN(example_best)(FN(beam_example) *ex, int64_t K) {
    const int64_t held = ex->frames - ex->base;
    if (beam_grow_pair(&ex->best_tok, &ex->best_time, &ex->best_cap, held)) return -1;
    if (held > ex->slot_cap) {
        int64_t cap = 2 * held > 64 ? 2 * held : 64;
        int64_t *slots = malloc(sizeof(int64_t) * cap);  /* a fresh walk follows */
        if (!slots) return -1;
        free(ex->best_slot);
        ex->best_slot = slots, ex->slot_cap = cap, ex->best_upto = 0;
    }
    /* No beam left (every path ruled out): the committed tokens alone; the rows of the
     * frames that left none were never written. */
    if (ex->live <= 0) {
        ex->best_len = ex->best_upto = 0;
        return 0;
    }
    /* The last walk's slots from the frame the committed ones end at: moved to the front
     * (the frames before base are committed). */
    const int64_t kept = ex->best_upto > ex->base ? ex->best_upto - ex->base : 0;
    if (kept && ex->best_from < ex->base)
        memmove(ex->best_slot, ex->best_slot + (ex->base - ex->best_from),
                sizeof(int64_t) * (size_t)kept);
    /* The last walk's tokens, less those now committed, at the front; the new ones go
     * to the back, last first (the two never meet: there are at most held in all). */
    int64_t first = 0, length = 0;
    while (first < ex->best_len && ex->best_time[first] < ex->base) ++first;
    if (first && ex->best_len > first) {
        memmove(ex->best_tok, ex->best_tok + first, sizeof(int64_t) * (size_t)(ex->best_len - first));
        memmove(ex->best_time, ex->best_time + first,
                sizeof(int64_t) * (size_t)(ex->best_len - first));
    }
    const int64_t old_len = ex->best_len > first ? ex->best_len - first : 0;
    int64_t slot = 0, t = held - 1, walked = 0;
    for (; t >= 0; --t) {
        if (t < kept && ex->best_slot[t] == slot) break;  /* the last walk's path */
        ex->best_slot[t] = slot;
        const beam_link link = ex->hist[t * K + slot];
        if (link.tok >= 0) {
            ex->best_tok[ex->best_cap - 1 - walked] = link.tok;
            ex->best_time[ex->best_cap - 1 - walked++] = ex->base + t;
        }
        slot = link.src;
    }
    /* The last walk's tokens at frames base .. base + t, then the new ones. */
    while (length < old_len && ex->best_time[length] <= ex->base + t) ++length;
    for (int64_t i = 0; i < walked; ++i) {  /* (they were written last first) */
        ex->best_tok[length + i] = ex->best_tok[ex->best_cap - walked + i];
        ex->best_time[length + i] = ex->best_time[ex->best_cap - walked + i];
    }
    ex->best_len = length + walked;
    ex->best_from = ex->base;
    ex->best_upto = ex->frames;
    return 0;
}

/* The end of example ex: each beam's last word, then </s>; the nbest by final score,
 * into the outputs of example b (tokens and times (B, nbest, T), T the room for each
 * path), as ctc_beam_search writes them. */
static void FN(example_end)(const FN(beam_search) *sr, FN(beam_scratch) *x,
                            FN(beam_example) *ex, int64_t b, int64_t nbest, int64_t T,
                            int64_t *out_tokens, int64_t *out_times, int64_t *out_len,
                            int64_t *out_count, double *out_score, double *out_acoustic,
                            double *out_lm, double *out_tlm, double *out_unk) {
    const struct ctc_words *w = sr->w;
    const int64_t K = sr->K, row = sr->row, depth = sr->depth, H = sr->H, tofs = sr->tofs;
    FN(beam_slot) *cur = ex->cur;
    int64_t *rows = ex->rows, live = ex->live;
    FN(beam_cand) *heap = x->heap;
    REAL *stay_b = x->stay_b, *stay_nb = x->stay_nb, *total = x->total;
    /* The end: each beam's last word, then </s>; the nbest by final score. */
    FN(beam_cand) *finals = heap;
    int64_t n_final = 0;
    REAL *lm_total = stay_b, *tlm_total = stay_nb;  /* reused as scratch */
    for (int64_t k = 0; k < live; ++k) {
        FN(beam_slot) *s = &cur[k];
        REAL acoustic = FN(lse2)(s->pb, s->pnb);
        total[k] = acoustic;
        if (acoustic == BEAM_NEG_INF) continue;
        REAL rank = acoustic;
        lm_total[k] = tlm_total[k] = 0;
        if (w) {
            FN(beam_completion)(w, s, rows + k * row, rows + k * row + depth,
                                rows + k * row + depth + H);
            REAL extra = FN(beam_extra)(w, s);
            REAL end = s->plen > 0 ? s->delta : 0;
            REAL lm_end = 0;
            if (w->lm.order > 0) {
                const int64_t *context = s->plen > 0 ? rows + k * row + depth + H
                                                     : rows + k * row;
                lm_end = (REAL)beam_lm_score(&w->lm, context, w->lm.eos, NULL);
            }
            rank = acoustic + extra + end + (REAL)(w->lm_weight * lm_end);
            lm_total[k] = s->lm + (s->plen > 0 ? s->lm_word : 0) + lm_end;
            if (w->tlm.order > 0) {  /* the token model's </s> */
                REAL t_end = (REAL)beam_lm_score(&w->tlm, rows + k * row + tofs,
                                                 w->tlm.eos, NULL);
                rank += (REAL)(w->tlm_weight * t_end);
                tlm_total[k] = s->tlm + t_end;
            }
            if (rank == BEAM_NEG_INF) continue;  /* ends in a forbidden word */
        }
        finals[n_final].rank = rank;
        finals[n_final].index = k;
        finals[n_final++].known = 1;
    }
    for (int64_t i = 1; i < n_final; ++i) {
        FN(beam_cand) x = finals[i];
        int64_t j = i - 1;
        while (j >= 0 && FN(beam_before)(&x, &finals[j])) { finals[j + 1] = finals[j]; --j; }
        finals[j + 1] = x;
    }
    int64_t count = n_final < nbest ? n_final : nbest;
    out_count[b] = count;
    for (int64_t n = 0; n < nbest; ++n) {
        int64_t *tokens = out_tokens + (b * nbest + n) * T;
        int64_t *times = out_times + (b * nbest + n) * T;
        for (int64_t i = 0; i < T; ++i) tokens[i] = times[i] = -1;
        out_len[b * nbest + n] = 0;
        if (n >= count) continue;
        int64_t k = finals[n].index;
        out_score[b * nbest + n] = finals[n].rank;
        out_acoustic[b * nbest + n] = total[k];
        out_lm[b * nbest + n] = w ? lm_total[k] : 0;
        out_tlm[b * nbest + n] = w ? tlm_total[k] : 0;
        out_unk[b * nbest + n] = w ? cur[k].unkc + (cur[k].plen > 0 ? cur[k].ucost : 0) : 0;
        out_len[b * nbest + n] = FN(example_path)(ex, K, k, tokens, times);
    }
}

/* Decodes examples b0 <= b < b1 of lp (B, T, C) (log-probabilities, padded frames
 * never read). Writes per example its count of hypotheses (out_count, <= nbest) and
 * for each: tokens and their first frames (out_tokens, out_times (B, nbest, T), -1
 * padded), out_len, out_score, out_acoustic, out_lm, out_tlm (the token model's
 * ln p) and out_unk (what its unknown words cost) (B, nbest). Returns 0, or -1
 * when memory ran out. The stream below runs the same functions, frames in chunks. */
int FN(ctc_beam_search)(const REAL *lp, int64_t T, int64_t C, const int64_t *logit_len,
                        int64_t b0, int64_t b1, int64_t blank, int64_t K, int64_t V,
                        int64_t nbest, double token_min_logp, double beam_threshold,
                        const struct ctc_words *w, int64_t *out_tokens, int64_t *out_times,
                        int64_t *out_len, int64_t *out_count, double *out_score,
                        double *out_acoustic, double *out_lm, double *out_tlm,
                        double *out_unk) {
    FN(beam_search) sr;
    FN(beam_scratch) x;
    FN(beam_example) ex;
    memset(&x, 0, sizeof(x));
    memset(&ex, 0, sizeof(ex));
    int failed = FN(search_setup)(&sr, w, C, blank, K, V, token_min_logp, beam_threshold);
    failed = FN(scratch_alloc)(&x, &sr) || failed;
    for (int64_t b = b0; b < b1 && !failed; ++b) {
        failed = FN(example_start)(&ex, &sr)
                 || FN(example_frames)(&sr, &x, &ex, lp + b * T * C, logit_len[b]);
        if (!failed)
            FN(example_end)(&sr, &x, &ex, b, nbest, T, out_tokens, out_times, out_len,
                            out_count, out_score, out_acoustic, out_lm, out_tlm, out_unk);
    }
    FN(example_free)(&ex);
    FN(scratch_free)(&x);
    FN(search_free)(&sr);
    return failed ? -1 : 0;
}

/* A stream: the same search over a batch of B examples whose frames arrive in chunks.
 * w must stay valid until it is closed. */
typedef struct {
    FN(beam_search) sr;
    int64_t B;
    FN(beam_example) *ex;
    /* partial()'s: a path's tokens in one piece for spelling. */
    int64_t *spell, spell_cap;
} FN(beam_stream);

/* A stream of B examples, each at the empty prefix; NULL when memory ran out. */
void *FN(ctc_beam_stream_open)(int64_t B, int64_t C, int64_t blank, int64_t K, int64_t V,
                               double token_min_logp, double beam_threshold,
                               const struct ctc_words *w) {
    FN(beam_stream) *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    st->B = B;
    st->ex = calloc(B ? B : 1, sizeof(*st->ex));
    int failed = !st->ex
                 || FN(search_setup)(&st->sr, w, C, blank, K, V, token_min_logp, beam_threshold);
    for (int64_t b = 0; b < B && !failed; ++b) failed = FN(example_start)(&st->ex[b], &st->sr);
    if (failed) {
        for (int64_t b = 0; st->ex && b < B; ++b) FN(example_free)(&st->ex[b]);
        free(st->ex);
        FN(search_free)(&st->sr);
        free(st);
        return NULL;
    }
    return st;
}

void FN(ctc_beam_stream_close)(void *stream) {
    FN(beam_stream) *st = stream;
    if (!st) return;
    for (int64_t b = 0; b < st->B; ++b) FN(example_free)(&st->ex[b]);
    free(st->ex);
    free(st->spell);
    FN(search_free)(&st->sr);
    free(st);
}

/* Frames lp (B, T, C) of examples b0 <= b < b1: frames[b] of them (the rest of the
 * chunk is not read), then what every beam agrees on committed; horizon > 0 first drops
 * the beams that left the best one's path more than horizon frames back. With next
 * non-NULL, the examples are b0 + the values taken from *next (an atomic counter that
 * threads calling at once share) until b1, so each runs once whichever thread takes
 * it. Returns 0, or -1 when memory ran out (the stream is then unusable). */
int FN(ctc_beam_stream_feed)(void *stream, const REAL *lp, int64_t T, const int64_t *frames,
                             int64_t horizon, int64_t b0, int64_t b1, int64_t *next) {
    FN(beam_stream) *st = stream;
    const int64_t C = st->sr.C, K = st->sr.K;
    FN(beam_scratch) x;
    memset(&x, 0, sizeof(x));
    int *mark = malloc(sizeof(int) * (K ? K : 1));
    int failed = FN(scratch_alloc)(&x, &st->sr) || !mark;
    for (int64_t i = b0; !failed; ++i) {
        const int64_t b = next ? b0 + __atomic_fetch_add(next, 1, __ATOMIC_RELAXED) : i;
        if (b >= b1) break;
        FN(beam_example) *ex = &st->ex[b];
        failed = FN(example_frames)(&st->sr, &x, ex, lp + b * T * C, frames[b])
                 || FN(example_commit)(ex, K, mark, horizon);
        /* Its best path, walked again where frames changed it (a commit comes only
         * with frames: given none, an example is where its last walk left it). */
        if (!failed && frames[b] > 0) failed = FN(example_best)(ex, K);
    }
    free(mark);
    FN(scratch_free)(&x);
    return failed ? -1 : 0;
}

/* ctc_beam_stream_feed_logits' work, on one of the threads sharing it. */
static int64_t FN(feed_chunk)(void *stream, const REAL *x, int64_t stride_b, int64_t T,
                              const int64_t *frames, const uint8_t *finished,
                              int64_t horizon, REAL *lp, uint8_t *bad, int64_t *shared) {
    FN(beam_stream) *st = stream;
    const int64_t B = st->B, C = st->sr.C;
    for (;;) {
        const int64_t b = __atomic_fetch_add(&shared[0], 1, __ATOMIC_RELAXED);
        if (b >= B) break;
        if (frames[b] < 0 || frames[b] > T || (finished[b] && frames[b] > 0))
            __atomic_fetch_add(&shared[3], 1, __ATOMIC_RELAXED);
        else  /* its frames only: rows past them are never read */
            FN(ctc_log_softmax)(x + b * stride_b, frames[b], C, frames + b, 0, 1,
                                lp + b * T * C, bad + b * T);
        __atomic_fetch_add(&shared[1], 1, __ATOMIC_RELEASE);
    }
    /* The other thread is on its last example (some microseconds); yield in case it
     * waits for this core. */
    while (__atomic_load_n(&shared[1], __ATOMIC_ACQUIRE) < B) sched_yield();
    if (__atomic_load_n(&shared[3], __ATOMIC_RELAXED)) return -2;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < frames[b]; ++t)
            if (bad[b * T + t]) return 1 + b * T + t;
    return FN(ctc_beam_stream_feed)(stream, lp, T, frames, horizon, 0, B, &shared[2]);
}

/* shared[4]: the threads in a chunk's call, with this bit set once its work is done. */
#define BEAM_CHUNK_DONE ((int64_t)1 << 62)

/* A chunk of logits x (B, T, C), example b's at x + b * stride_b: the log-softmax of
 * every example's frames into lp (B, T, C) and its bad frames into bad (B, T)
 * (ctc_log_softmax, the offline call's row code), then, only if no frame within
 * frames[b] is bad, the search of the chunk as ctc_beam_stream_feed. Every thread
 * calling it with the same shared[7] (zeroed) takes examples from shared[0] for the
 * log-softmax, waits for all of them (shared[1] counts them), then takes examples from
 * shared[2] for the search: one call a chunk, both phases on the threads. An example
 * whose frames[b] is outside [0, T], or above 0 where finished[b] is set, is not read
 * (shared[3] counts them). A call returns only once no thread reads the chunk or the
 * stream for it: the first done marks the work done (shared[4]), leaving its verdict
 * in shared[6], and each waits for those still in it; a thread arriving after that (a
 * worker that woke late, or the caller after a worker that woke early) returns that
 * verdict at once, reading nothing else (beam_pool_run). Returns 0; -2 where an
 * example was so, nothing fed; 1 + b * T + t of the first bad frame, nothing fed; or
 * -1 when memory ran out (on any thread: shared[5]). */
int64_t FN(ctc_beam_stream_feed_logits)(void *stream, const REAL *x, int64_t stride_b,
                                    int64_t T, const int64_t *frames, const uint8_t *finished,
                                    int64_t horizon, REAL *lp, uint8_t *bad, int64_t *shared) {
    int64_t verdict;
    if (__atomic_fetch_add(&shared[4], 1, __ATOMIC_ACQ_REL) & BEAM_CHUNK_DONE) {
        /* Late: the others did the chunk (the caller itself can be, where its helper
         * started first), and its buffers may be gone; their verdict is in shared[6]. */
        verdict = __atomic_load_n(&shared[6], __ATOMIC_ACQUIRE);
    } else {
        verdict = FN(feed_chunk)(stream, x, stride_b, T, frames, finished, horizon, lp, bad,
                                 shared);
        if (verdict == -1) __atomic_store_n(&shared[5], 1, __ATOMIC_RELEASE);
        /* Every thread that ran finds the same verdict (but running out of memory). */
        __atomic_store_n(&shared[6], verdict, __ATOMIC_RELEASE);
        __atomic_fetch_or(&shared[4], BEAM_CHUNK_DONE, __ATOMIC_ACQ_REL);
    }
    __atomic_fetch_sub(&shared[4], 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&shared[4], __ATOMIC_ACQUIRE) & ~BEAM_CHUNK_DONE) sched_yield();
    return __atomic_load_n(&shared[5], __ATOMIC_ACQUIRE) ? -1 : verdict;
}

/* A chunk's job for the pool's threads: ctc_beam_stream_feed_logits of its arguments. */
static int64_t FN(feed_job)(const beam_job *job, int64_t *shared) {
    return FN(ctc_beam_stream_feed_logits)(job->stream, (const REAL *)job->x, job->stride_b,
                                           job->T, job->frames, job->finished, job->horizon,
                                           (REAL *)job->lp, job->bad, shared);
}

/* ctc_beam_stream_feed_logits on threads threads: this one and the library's workers
 * (beam_pool_run); what it returns. */
int64_t FN(ctc_beam_stream_feed_threads)(void *stream, const REAL *x, int64_t stride_b,
                                         int64_t T, const int64_t *frames,
                                         const uint8_t *finished, int64_t horizon, REAL *lp,
                                         uint8_t *bad, int64_t threads) {
    const beam_job job = {FN(feed_job), stream, x, stride_b, T, frames, finished, horizon,
                          lp, bad};
    return beam_pool_run(&job, threads);
}

/* The pool's workers started, jobs posted and workers that joined one, into out[3]. */
void FN(ctc_beam_stream_pool)(int64_t *out) {
    pthread_mutex_lock(&beam_pool.mu);
    out[0] = beam_pool.workers, out[1] = beam_pool.jobs, out[2] = beam_pool.joins;
    pthread_mutex_unlock(&beam_pool.mu);
}

/* Each example's sizes, into row b of held (B, 4): frames searched, tokens committed,
 * frames of history held (each K slots of two int32), and the bytes its search holds
 * (its beams, history and best path, allocated; the committed tokens are two int64
 * each). */
void FN(ctc_beam_stream_held)(void *stream, int64_t *held) {
    FN(beam_stream) *st = stream;
    const int64_t K = st->sr.K, row = st->sr.row;
    for (int64_t b = 0; b < st->B; ++b) {
        const FN(beam_example) *ex = &st->ex[b];
        int64_t *h = held + 4 * b;
        h[0] = ex->frames;
        h[1] = ex->n_commit;
        h[2] = ex->frames - ex->base;
        h[3] = (int64_t)(K * sizeof(FN(beam_slot)) + K * (row ? row : 1) * sizeof(int64_t)
                         + ex->hist_cap * K * sizeof(beam_link)
                         + 2 * (ex->best_cap + ex->seen_cap) * sizeof(int64_t));
    }
}

/* The words tokens[0 .. n) spell, as ctc_decoder's split_words: a token with starts[c]
 * set closes the word being spelled (if it has letters), then its text, bytes
 * [off[c], off[c + 1]) of pieces (UTF-8), is appended to the current word. The words go
 * to out joined by a 0 byte (which no piece holds), at most off's largest piece + 1
 * bytes a token; returns the bytes written. */
static int64_t FN(spell_words)(const int64_t *tokens, int64_t n, const uint8_t *starts,
                               const int64_t *off, const uint8_t *pieces, uint8_t *out) {
    int64_t written = 0, letters = 0;  /* letters: bytes of the current word */
    int split = 0;  /* a word ended: the next letters begin another */
    for (int64_t i = 0; i < n; ++i) {
        const int64_t c = tokens[i], size = off[c + 1] - off[c];
        if (starts[c] && letters) split = 1, letters = 0;
        if (!size) continue;
        if (split) out[written++] = 0, split = 0;
        memcpy(out + written, pieces + off[c], (size_t)size);
        written += size;
        letters += size;
    }
    return written;
}

/* spell_words on its own, for the tests: the bytes written to out. */
int64_t FN(ctc_spell_words)(const int64_t *tokens, int64_t n, const uint8_t *starts,
                            const int64_t *off, const uint8_t *pieces, uint8_t *out) {
    return FN(spell_words)(tokens, n, starts, off, pieces, out);
}

/* Example ex's path now (its committed tokens, then its best beam's), token or
 * frame i. */
static inline int64_t FN(path_tok)(const FN(beam_example) *ex, int64_t i) {
    return i < ex->n_commit ? ex->commit_tok[i] : ex->best_tok[i - ex->n_commit];
}

static inline int64_t FN(path_time)(const FN(beam_example) *ex, int64_t i) {
    return i < ex->n_commit ? ex->commit_time[i] : ex->best_time[i - ex->n_commit];
}

/* Searched further since partial() last showed it, or never shown. */
static inline int FN(to_show)(const FN(beam_example) *ex) {
    return ex->frames != ex->shown;
}

/* How many tokens lead both ex's path now and the one partial() last showed (at least
 * those committed then: a committed token never changes). */
static int64_t FN(shown_prefix)(const FN(beam_example) *ex) {
    const int64_t now = ex->n_commit + ex->best_len, then = ex->seen_from + ex->seen_len;
    int64_t k = ex->seen_from;
    while (k < now && k < then && FN(path_tok)(ex, k) == ex->seen_tok[k - ex->seen_from]
           && FN(path_time)(ex, k) == ex->seen_time[k - ex->seen_from])
        ++k;
    return k;
}

/* What partial() shows anew: the n examples searched further since it last showed
 * them (or never shown), each one's best beam now (by the search's rank, before any
 * end-of-utterance term). Of each path only what changed goes out: its tokens from
 * keep on (keep: how many lead the path as partial() last showed it; a committed token
 * never changes, so at least those then committed). Into out (room[0] int64): n, then
 * m (the tokens sent in all), then per example its index, then how many of its tokens
 * are committed, then its keep, then the n + 1 offsets of its tokens among the m, then
 * the n + 1 offsets of its words' bytes in text, then the m tokens and their m frames.
 * With starts non-NULL (spell_words' table) the words of each whole path go to text
 * (room[1] bytes). Returns the int64 written to out (those examples are then shown);
 * -1, the room needed written into room; or -2 when memory ran out (for either,
 * nothing is shown: out and text are not to be read). */
int64_t FN(ctc_beam_stream_partial)(void *stream, int64_t *room, int64_t *out,
                                    const uint8_t *starts, const int64_t *off,
                                    const uint8_t *pieces, uint8_t *text) {
    FN(beam_stream) *st = stream;
    int64_t n = 0, m = 0, letters = 0, longest = 0;
    for (int64_t b = 0; b < st->B; ++b) {
        FN(beam_example) *ex = &st->ex[b];
        if (!FN(to_show)(ex)) continue;
        const int64_t now = ex->n_commit + ex->best_len;
        /* Room to keep what is shown now past the committed tokens. */
        if (beam_grow_pair(&ex->seen_tok, &ex->seen_time, &ex->seen_cap, ex->best_len))
            return -2;
        ++n;
        m += now - FN(shown_prefix)(ex);
        letters += now;
        if (now > longest) longest = now;
    }
    if (4 + 5 * n + 2 * m > room[0]) {
        room[0] = 4 + 5 * n + 2 * m;
        return -1;
    }
    if (starts) {
        /* (Looked at each call: a caller may pass another table, even at the same
         * address, and the room must be this one's.) */
        int64_t widest = 0;
        for (int64_t c = 0; c < st->sr.C; ++c)
            if (off[c + 1] - off[c] > widest) widest = off[c + 1] - off[c];
        if (letters * (widest + 1) > room[1]) {
            room[1] = letters * (widest + 1);
            return -1;
        }
        if (longest > st->spell_cap) {
            int64_t *grown = realloc(st->spell, sizeof(int64_t) * (size_t)(2 * longest));
            if (!grown) return -2;
            st->spell = grown, st->spell_cap = 2 * longest;
        }
    }
    int64_t *index = out + 2, *committed = index + n, *keep = committed + n;
    int64_t *at = keep + n, *text_at = at + n + 1, *tokens = text_at + n + 1;
    int64_t i = 0;
    at[0] = text_at[0] = 0;
    for (int64_t b = 0; b < st->B; ++b) {
        FN(beam_example) *ex = &st->ex[b];
        if (!FN(to_show)(ex)) continue;
        const int64_t now = ex->n_commit + ex->best_len, k = FN(shown_prefix)(ex);
        index[i] = b;
        committed[i] = ex->n_commit;
        keep[i] = k;
        at[i + 1] = at[i] + now - k;
        for (int64_t j = k; j < now; ++j) {
            tokens[at[i] + j - k] = FN(path_tok)(ex, j);
            tokens[m + at[i] + j - k] = FN(path_time)(ex, j);
        }
        text_at[i + 1] = text_at[i];
        if (starts) {
            if (ex->n_commit)  /* (none: the buffers may be NULL, not memcpy's) */
                memcpy(st->spell, ex->commit_tok, sizeof(int64_t) * (size_t)ex->n_commit);
            if (ex->best_len)
                memcpy(st->spell + ex->n_commit, ex->best_tok,
                       sizeof(int64_t) * (size_t)ex->best_len);
            text_at[i + 1] += FN(spell_words)(st->spell, now, starts, off, pieces,
                                              text + text_at[i]);
        }
        /* Shown: what now follows the committed tokens, kept for the next call. */
        if (ex->best_len) {
            memcpy(ex->seen_tok, ex->best_tok, sizeof(int64_t) * (size_t)ex->best_len);
            memcpy(ex->seen_time, ex->best_time, sizeof(int64_t) * (size_t)ex->best_len);
        }
        ex->seen_from = ex->n_commit;
        ex->seen_len = ex->best_len;
        ex->shown = ex->frames;
        ++i;
    }
    out[0] = n;
    out[1] = m;
    return 4 + 5 * n + 2 * m;
}

/* Every example as if partial() had never shown it: the next call sends each whole
 * path (the caller lost what it was sent last). */
void FN(ctc_beam_stream_unseen)(void *stream) {
    FN(beam_stream) *st = stream;
    for (int64_t b = 0; b < st->B; ++b) {
        st->ex[b].shown = -1;
        st->ex[b].seen_len = st->ex[b].seen_from = 0;
    }
}

/* The n-best of examples b0 <= b < b1 as ctc_beam_search writes them, T the room for
 * each path (at least held[1] + held[2]). The examples stay as they were. Returns 0,
 * or -1 when memory ran out. */
int FN(ctc_beam_stream_finish)(void *stream, int64_t b0, int64_t b1, int64_t nbest, int64_t T,
                               int64_t *out_tokens, int64_t *out_times, int64_t *out_len,
                               int64_t *out_count, double *out_score, double *out_acoustic,
                               double *out_lm, double *out_tlm, double *out_unk) {
    FN(beam_stream) *st = stream;
    FN(beam_scratch) x;
    memset(&x, 0, sizeof(x));
    int failed = FN(scratch_alloc)(&x, &st->sr);
    for (int64_t b = b0; b < b1 && !failed; ++b)
        FN(example_end)(&st->sr, &x, &st->ex[b], b, nbest, T, out_tokens, out_times, out_len,
                        out_count, out_score, out_acoustic, out_lm, out_tlm, out_unk);
    FN(scratch_free)(&x);
    return failed ? -1 : 0;
}

/* Example b back at the empty prefix, its buffers kept. Returns 0, or -1 when memory
 * ran out. */
int FN(ctc_beam_stream_reset)(void *stream, int64_t b) {
    FN(beam_stream) *st = stream;
    return FN(example_start)(&st->ex[b], &st->sr);
}
