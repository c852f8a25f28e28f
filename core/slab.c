/* Watcher memory: each loop carves its watchers out of pages of its own, so
 * that creating and freeing a watcher costs no malloc and no free. A page
 * never moves and is freed only with the loop, so a freed watcher's slot
 * stays readable with magic 0 until it is reused: a stale pointer is refused
 * as "not a live watcher". Slots never used go first, then freed ones, oldest
 * first, to keep that true as long as possible. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct ae_slab_page {
    struct ae_slab_page *next;
    size_t cap, used; /* slots; slots[0..used) have been handed out once */
    ae_watcher slots[];
};

/* The first page holds 32 watchers, each next one twice as many, up to
 * 4096 (320 KiB): few pages for many watchers, little for few. Fresh pages
 * come zeroed from calloc and are touched only as slots are handed out. */
enum { SLAB_FIRST = 32, SLAB_MAX = 4096 };

/* A new page, its first slot handed out; NULL when out of memory. Out of
 * line, so that the common path below saves no registers. */
static __attribute__((noinline)) ae_watcher *slab_grow(ae_slab *s)
{
    size_t cap = s->pages ? s->pages->cap * 2 : SLAB_FIRST;
    if (cap > SLAB_MAX)
        cap = SLAB_MAX;
    struct ae_slab_page *p = calloc(1, sizeof *p + cap * sizeof(ae_watcher));
    if (!p)
        return NULL;
    p->cap = cap;
    p->used = 1;
    p->next = s->pages;
    s->pages = p;
    return &p->slots[0];
}

static ae_watcher *slab_take(ae_slab *s)
{
    struct ae_slab_page *p = s->pages;
    if (p && p->used < p->cap)
        return &p->slots[p->used++]; /* never used: still zero */
    ae_watcher *w = s->free_head;
    if (!w)
        return slab_grow(s);
    s->free_head = w->next;
    if (!w->next)
        s->free_tail = NULL;
    memset(w, 0, sizeof *w);
    return w;
}

ae_watcher *ae__watcher_alloc(ae_loop *loop, enum ae_kind kind, void *arg)
{
    ae_watcher *w = slab_take(&loop->slab);
    if (!w) {
        ae__set_error(AE_ENOMEM, "out of memory for a watcher");
        return NULL;
    }
    w->magic = AE_WATCHER_MAGIC;
    w->kind = (uint8_t)kind;
    w->loop = loop;
    w->arg = arg;
    w->serial = ++loop->serial;
    return w;
}

void ae__watcher_release(ae_watcher *w)
{
    ae_slab *s = &w->loop->slab;
    w->magic = 0;
    w->next = NULL;
    if (s->free_tail)
        s->free_tail->next = w;
    else
        s->free_head = w;
    s->free_tail = w;
}

void ae__slab_each_live(ae_loop *loop, void (*fn)(ae_watcher *w))
{
    for (struct ae_slab_page *p = loop->slab.pages; p; p = p->next)
        for (size_t i = 0; i < p->used; i++)
            if (p->slots[i].magic == AE_WATCHER_MAGIC)
                fn(&p->slots[i]);
}

void ae__slab_free(ae_loop *loop)
{
    struct ae_slab_page *p = loop->slab.pages;
    while (p) {
        struct ae_slab_page *next = p->next;
        free(p);
        p = next;
    }
    loop->slab = (ae_slab){0};
}
