/* Watcher memory: each loop carves its watchers out of pages of its own, one
 * set of pages per kind with slots of that kind's size (ae__watcher_size),
 * so that creating and freeing a watcher costs no malloc and no free and a
 * watcher takes only the bytes its kind needs. A page never moves and is
 * freed only with the loop, so a freed watcher's slot stays readable with
 * magic 0 until a watcher of the same kind reuses it: a stale pointer is
 * refused as "not a live watcher". Slots never used go first, then freed
 * ones, oldest first, to keep that true as long as possible. */
#include <stdlib.h>

#include "internal.h"

/* The first page of a kind holds 32 watchers, each next one twice as many,
 * up to 4096 (at most 384 KiB): few pages for many watchers, little for
 * few. Pages come from malloc, not calloc, and a slot is zeroed when it is
 * handed out (ae__watcher_alloc): a page's memory becomes resident only as
 * it is used, and calloc's zeroing of a page from reused heap memory (as
 * much as 45 instructions per watcher, callgrind) is not paid. */
enum { SLAB_FIRST = 32, SLAB_MAX = 4096 };

ae_watcher *ae__slab_take_slow(ae_loop *loop, enum ae_kind kind)
{
    ae_slab *s = &loop->slabs[kind];
    size_t size = ae__watcher_size(kind);
    ae_watcher *w = s->free_head;
    if (w) {
        s->free_head = w->next;
        if (!w->next)
            s->free_tail = NULL;
        return w;
    }
    uint32_t cap = s->pages ? s->pages->cap * 2 : SLAB_FIRST;
    if (cap > SLAB_MAX)
        cap = SLAB_MAX;
    ae_slab_page *p = malloc(sizeof *p + cap * size);
    if (!p) {
        ae__set_error(AE_ENOMEM, "out of memory for a watcher");
        return NULL;
    }
    p->cap = cap;
    p->used = 1;
    p->next = s->pages;
    s->pages = p;
    return (ae_watcher *)(void *)p->slots;
}

void ae__watcher_release(ae_watcher *w)
{
    ae_slab *s = &w->loop->slabs[w->kind];
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
    for (int kind = 0; kind < AE__KINDS; kind++) {
        size_t size = ae__watcher_size((enum ae_kind)kind);
        for (ae_slab_page *p = loop->slabs[kind].pages; p; p = p->next) {
            for (size_t i = 0; i < p->used; i++) {
                ae_watcher *w = (ae_watcher *)(void *)(p->slots + i * size);
                if (w->magic == AE_WATCHER_MAGIC)
                    fn(w);
            }
        }
    }
}

void ae__slab_free(ae_loop *loop)
{
    for (int kind = 0; kind < AE__KINDS; kind++) {
        ae_slab_page *p = loop->slabs[kind].pages;
        while (p) {
            ae_slab_page *next = p->next;
            free(p);
            p = next;
        }
        loop->slabs[kind] = (ae_slab){0};
    }
}
