/* Watcher lists: unlinking (appending is inline in internal.h). Cursors, which keep a walk over a list valid while the
 * callbacks it runs free or create watchers, are inline in internal.h. */
#include "internal.h"

void ae__cursors_unlink(ae_loop *loop, ae_watcher *w, ae_watcher *before)
{
    for (ae_cursor *c = loop->cursors; c; c = c->up) {
        if (c->last == w) {
            /* The walk ends one earlier; if w was its next, it is over. */
            c->last = before;
            if (c->next == w)
                c->next = NULL;
        } else if (c->next == w) {
            c->next = w->next;
        }
    }
}

void ae__list_unlink(ae_loop *loop, ae_list *list, ae_watcher *w)
{
    ae__cursors_unlink(loop, w, w->prev);
    if (w->prev)
        w->prev->next = w->next;
    else
        list->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        list->tail = w->prev;
    w->next = w->prev = NULL;
}
