/*
 * quadtree.c: the quadtree index, for worlds where entities crowd into a few places.
 *
 * Nodes live in one array and name each other by number; the four children of a node are
 * allocated together as a block, and freed blocks are reused. Only leaves hold entities (in
 * a bucket, as grid cells do). A leaf splits when it holds more than SPLIT entities, unless
 * it is already at MAX_DEPTH or no wider than the minimum leaf size (many entities on one
 * spot must not split forever). A subtree that drops to MERGE entities or fewer collapses
 * back into one leaf; the gap between SPLIT and MERGE keeps an entity walking along a
 * boundary from splitting and merging the same node on every step.
 *
 * A point belongs to the child chosen by comparing it with the node's midpoints (x >= mx
 * goes right), and the children's bounds are those same float midpoints, so "is the point
 * still inside this leaf" and "which leaf would a descent pick" always agree.
 */
#include "index_impl.h"

#include <string.h>

#define SPLIT 32u
#define MERGE 12u
#define MAX_DEPTH 24u
#define NONE UINT32_MAX

typedef struct qnode {
    float x0, y0, x1, y1;   /* [x0, x1) x [y0, y1) */
    uint32_t child;         /* first of four children, or NONE for a leaf */
    uint32_t parent;        /* NONE for the root */
    uint32_t count;         /* entities in the subtree */
    uint32_t depth;
    sl__bucket b;           /* entities, leaves only */
} qnode;

typedef struct quadtree {
    sl_index base;          /* must stay first */
    qnode *nodes;
    uint32_t nnodes, cap;
    uint32_t free_block;    /* first node of a free block of four, chained through .child */
    float min_size;
    sl_u32vec stack;        /* traversal scratch */
} quadtree;

static inline bool is_leaf(const qnode *n)
{
    return n->child == NONE;
}

static inline uint32_t child_for(const qnode *n, float x, float y)
{
    float mx = (n->x0 + n->x1) * 0.5f, my = (n->y0 + n->y1) * 0.5f;
    return n->child + (x >= mx) + 2u * (y >= my);
}

static inline bool leaf_holds(const qnode *n, float x, float y)
{
    return x >= n->x0 && x < n->x1 && y >= n->y0 && y < n->y1;
}

/* Returns the first node of a block of four fresh nodes, or NONE on OOM. */
static uint32_t alloc_block(quadtree *q)
{
    if (q->free_block != NONE) {
        uint32_t b = q->free_block;
        q->free_block = q->nodes[b].child;
        return b;
    }
    if (q->nnodes + 4 > q->cap) {
        uint32_t cap = q->cap * 2;
        while (cap < q->nnodes + 4)
            cap *= 2;
        qnode *nodes = sl_realloc(q->base.alloc, q->nodes, (size_t)q->cap * sizeof(qnode),
                                   (size_t)cap * sizeof(qnode));
        if (!nodes)
            return NONE;
        q->nodes = nodes;
        q->cap = cap;
    }
    uint32_t b = q->nnodes;
    q->nnodes += 4;
    return b;
}

/* Splits leaf `id` into four children and moves its entities down; 0 or SL_ENOMEM. */
static int split(quadtree *q, uint32_t id)
{
    uint32_t c = alloc_block(q);
    if (c == NONE)
        return SL_ENOMEM;
    qnode *n = &q->nodes[id];   /* after alloc_block: the array may have moved */
    float mx = (n->x0 + n->x1) * 0.5f, my = (n->y0 + n->y1) * 0.5f;
    for (uint32_t k = 0; k < 4; k++) {
        qnode *ch = &q->nodes[c + k];
        *ch = (qnode){0};
        ch->x0 = (k & 1) ? mx : n->x0;
        ch->x1 = (k & 1) ? n->x1 : mx;
        ch->y0 = (k & 2) ? my : n->y0;
        ch->y1 = (k & 2) ? n->y1 : my;
        ch->child = NONE;
        ch->parent = id;
        ch->depth = n->depth + 1;
    }
    n->child = c;
    sl__bucket old = n->b;
    n->b = (sl__bucket){0};
    for (uint32_t i = 0; i < old.n; i++) {
        uint32_t k = child_for(&q->nodes[id], old.x[i], old.y[i]);
        sl__lane lane;
        sl__bucket_get(&q->base, &old, i, &lane);
        if (sl__bucket_put(&q->base, &q->nodes[k].b, k, &lane)) {
            /* Undo: put everything back into the leaf, which still owns `old`. */
            for (uint32_t j = 0; j < 4; j++)
                sl__bucket_free(&q->base, &q->nodes[c + j].b);
            n = &q->nodes[id];
            n->child = NONE;
            n->b = old;
            for (uint32_t j = 0; j < old.n; j++) {
                q->base.loc[old.slot[j]].bucket = id;
                q->base.loc[old.slot[j]].pos = j;
            }
            q->nodes[c].child = q->free_block;
            q->free_block = c;
            return SL_ENOMEM;
        }
        q->nodes[k].count++;
    }
    sl__bucket_free(&q->base, &old);
    return 0;
}

static bool may_split(const quadtree *q, const qnode *n)
{
    return n->b.n > SPLIT && n->depth < MAX_DEPTH && n->x1 - n->x0 > q->min_size &&
           n->y1 - n->y0 > q->min_size;
}

static int qt_insert(sl_index *index, const sl__lane *lane)
{
    quadtree *q = (quadtree *)index;
    uint32_t id = 0, slot = lane->slot;
    while (!is_leaf(&q->nodes[id]))
        id = child_for(&q->nodes[id], lane->x, lane->y);
    int rc = sl__bucket_put(index, &q->nodes[id].b, id, lane);
    if (rc)
        return rc;
    for (uint32_t p = id; p != NONE; p = q->nodes[p].parent)
        q->nodes[p].count++;
    /* Split while the entity's leaf is overfull (all may land in one child again). */
    while (may_split(q, &q->nodes[id])) {
        if (split(q, id))
            break;  /* an overfull leaf is slower, not wrong: keep the entity */
        id = index->loc[slot].bucket;
    }
    return 0;
}

/* Moves every entity of the subtree under `id` into bucket `into` (owned by node `dst`). */
static int gather(quadtree *q, uint32_t id, uint32_t dst, sl__bucket *into)
{
    qnode *n = &q->nodes[id];
    if (is_leaf(n)) {
        for (uint32_t i = 0; i < n->b.n; i++) {
            sl__lane lane;
            sl__bucket_get(&q->base, &n->b, i, &lane);
            int rc = sl__bucket_put(&q->base, into, dst, &lane);
            if (rc)
                return rc;
        }
        return 0;
    }
    for (uint32_t k = 0; k < 4; k++) {
        int rc = gather(q, q->nodes[id].child + k, dst, into);
        if (rc)
            return rc;
    }
    return 0;
}

/* Frees the children of `id` and everything below them. */
static void free_children(quadtree *q, uint32_t id)
{
    uint32_t c = q->nodes[id].child;
    for (uint32_t k = 0; k < 4; k++) {
        if (!is_leaf(&q->nodes[c + k]))
            free_children(q, c + k);
        sl__bucket_free(&q->base, &q->nodes[c + k].b);
    }
    q->nodes[c].child = q->free_block;
    q->free_block = c;
    q->nodes[id].child = NONE;
}

/* Collapses the subtree under inner node `id` into one leaf. */
static void merge(quadtree *q, uint32_t id)
{
    sl__bucket into = {0};
    if (gather(q, id, id, &into)) {
        /* Out of memory: keep the subtree as it is and restore the locations. */
        sl__bucket_free(&q->base, &into);
        uint32_t stack[4 * MAX_DEPTH + 4], top = 0;
        stack[top++] = id;
        while (top) {
            uint32_t k = stack[--top];
            qnode *n = &q->nodes[k];
            if (is_leaf(n)) {
                for (uint32_t i = 0; i < n->b.n; i++)
                    q->base.loc[n->b.slot[i]] = (sl__loc){k, i};
            } else {
                for (uint32_t j = 0; j < 4; j++)
                    stack[top++] = n->child + j;
            }
        }
        return;
    }
    free_children(q, id);
    q->nodes[id].b = into;
}

/* Removes the entry at loc, updates the counts above it and merges what became sparse. */
static void remove_at(quadtree *q, sl__loc loc)
{
    sl__bucket_remove_at(&q->base, &q->nodes[loc.bucket].b, loc.pos);
    uint32_t top = NONE;
    for (uint32_t p = loc.bucket; p != NONE; p = q->nodes[p].parent) {
        q->nodes[p].count--;
        if (!is_leaf(&q->nodes[p]) && q->nodes[p].count <= MERGE)
            top = p;
    }
    if (top != NONE)
        merge(q, top);
}

static void qt_remove(sl_index *index, uint32_t slot)
{
    remove_at((quadtree *)index, index->loc[slot]);
}

static int qt_move(sl_index *index, uint32_t slot, float x, float y)
{
    quadtree *q = (quadtree *)index;
    sl__loc old = index->loc[slot];
    qnode *n = &q->nodes[old.bucket];
    if (leaf_holds(n, x, y)) {
        n->b.x[old.pos] = x;
        n->b.y[old.pos] = y;
        return 0;
    }
    /*
     * Insert at the new position first, so that a failed allocation changes nothing. The
     * new leaf differs from the old one, and an insert only splits its own leaf, so the
     * old entry is still at `old` afterwards; removing it never swaps in the new entry, and
     * a merge it triggers rewrites every location it moves, ours included.
     */
    sl__lane lane;
    sl__bucket_get(index, &n->b, old.pos, &lane);
    lane.x = x;
    lane.y = y;
    int rc = qt_insert(index, &lane);
    if (rc) {
        index->loc[slot] = old;
        return rc;
    }
    remove_at(q, old);
    return 0;
}

static int qt_box(sl_index *index, float cx, float cy, float half,
                  int (*fn)(void *ud, const sl__bucket *b), void *ud)
{
    quadtree *q = (quadtree *)index;
    float bx0 = cx - half, bx1 = cx + half, by0 = cy - half, by1 = cy + half;
    sl_u32vec *st = &q->stack;
    st->n = 0;
    int rc = sl__u32vec_push(st, index->alloc, 0);
    while (!rc && st->n) {
        const qnode *n = &q->nodes[st->v[--st->n]];
        if (n->count == 0 || n->x0 > bx1 || n->x1 < bx0 || n->y0 > by1 || n->y1 < by0)
            continue;
        if (is_leaf(n)) {
            rc = fn(ud, &n->b);
        } else {
            for (uint32_t k = 0; k < 4 && !rc; k++)
                rc = sl__u32vec_push(st, index->alloc, n->child + k);
        }
    }
    return rc;
}

static sl__bucket *qt_bucket(sl_index *index, uint32_t id)
{
    return &((quadtree *)index)->nodes[id].b;
}

static size_t qt_memory(const sl_index *index)
{
    const quadtree *q = (const quadtree *)index;
    size_t bytes = sizeof *q + (size_t)q->cap * sizeof(qnode) + sl__u32vec_bytes(&q->stack);
    for (uint32_t i = 0; i < q->nnodes; i++)
        bytes += sl__bucket_bytes(index, &q->nodes[i].b);
    return bytes;
}

static void qt_free(sl_index *index)
{
    quadtree *q = (quadtree *)index;
    const sl_allocator *a = index->alloc;
    for (uint32_t i = 0; i < q->nnodes; i++)
        sl__bucket_free(index, &q->nodes[i].b);
    sl_free(a, q->nodes, (size_t)q->cap * sizeof(qnode));
    sl__u32vec_free(&q->stack, a);
    sl__index_base_free(index);
    sl_free(a, q, sizeof *q);
}

/* Depth first, children in Z order: leaves come out in a space-filling-curve order. */
static void qt_visit_node(quadtree *q, uint32_t id, void (*visit)(void *, sl__bucket *, uint32_t),
                          void *ud)
{
    qnode *n = &q->nodes[id];
    if (n->count == 0)
        return;
    if (is_leaf(n)) {
        visit(ud, &n->b, id);
        return;
    }
    for (uint32_t k = 0; k < 4; k++)
        qt_visit_node(q, q->nodes[id].child + k, visit, ud);
}

static void qt_visit(sl_index *index, void (*visit)(void *, sl__bucket *, uint32_t), void *ud)
{
    qt_visit_node((quadtree *)index, 0, visit, ud);
}

/* A tree that is one leaf again (its entities gone, or few) gives back the nodes it grew
 * and its traversal stack; node numbers stay as they are. Without memory it stays. */
static void qt_trim(sl_index *index)
{
    quadtree *q = (quadtree *)index;
    sl__u32vec_free(&q->stack, index->alloc);
    if (!is_leaf(&q->nodes[0]) || q->cap == 1)
        return;
    qnode *nodes = sl_realloc(index->alloc, q->nodes, (size_t)q->cap * sizeof(qnode),
                              sizeof(qnode));
    if (!nodes)
        return;
    q->nodes = nodes;
    q->cap = q->nnodes = 1;
    q->free_block = NONE;
}

static const struct sl__index_vt qt_vt = {
    qt_insert, qt_remove, qt_move, qt_box, NULL, qt_bucket, qt_memory, qt_free, qt_visit,
    qt_trim,
};

sl_index *sl__quadtree_new(float width, float height, float cell, const sl_allocator *alloc)
{
    quadtree *q = sl_realloc(alloc, NULL, 0, sizeof *q);
    if (!q)
        return NULL;
    *q = (quadtree){0};
    sl__index_base_init(&q->base, &qt_vt, SL_INDEX_QUADTREE, width, height, cell, alloc);
    /* Leaves never get narrower than a quarter of the typical radius. */
    q->min_size = cell > 0 ? cell / 4 : 1.0f;
    q->cap = 1;             /* the root; memory follows the entities (see alloc_block) */
    q->nodes = sl_realloc(alloc, NULL, 0, (size_t)q->cap * sizeof(qnode));
    if (!q->nodes) {
        sl_free(alloc, q, sizeof *q);
        return NULL;
    }
    q->nnodes = 1;
    q->free_block = NONE;
    q->nodes[0] = (qnode){.x1 = width, .y1 = height, .child = NONE, .parent = NONE};
    return &q->base;
}
