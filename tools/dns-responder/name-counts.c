#include "name-counts.h"

#include <stdlib.h>
#include <string.h>

struct name_count {
    char *name; /* NULL: a free slot */
    unsigned long count;
};

static unsigned long hash_name(const char *s)
{
    unsigned long h = 14695981039346656037ul; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ul;
    return h;
}

static struct name_count *find_slot(struct name_count *slots, unsigned long capacity,
                                    const char *name)
{
    unsigned long i = hash_name(name) & (capacity - 1);
    while (slots[i].name && strcmp(slots[i].name, name) != 0)
        i = (i + 1) & (capacity - 1);
    return &slots[i];
}

static int grow(struct name_counts *t)
{
    unsigned long capacity = t->capacity ? t->capacity * 2 : 1024;
    struct name_count *slots = calloc(capacity, sizeof *slots);
    if (!slots)
        return -1;
    for (unsigned long i = 0; i < t->capacity; i++)
        if (t->slots[i].name)
            *find_slot(slots, capacity, t->slots[i].name) = t->slots[i];
    free(t->slots);
    t->slots = slots;
    t->capacity = capacity;
    return 0;
}

unsigned long name_counts_bump(struct name_counts *t, const char *name)
{
    if ((t->used + 1) * 2 > t->capacity && grow(t) < 0) /* at most half full */
        return 0;
    struct name_count *slot = find_slot(t->slots, t->capacity, name);
    if (!slot->name) {
        slot->name = strdup(name);
        if (!slot->name)
            return 0;
        t->used++;
    }
    return ++slot->count;
}

void name_counts_clear(struct name_counts *t)
{
    for (unsigned long i = 0; i < t->capacity; i++)
        free(t->slots[i].name);
    free(t->slots);
    t->slots = NULL;
    t->capacity = t->used = 0;
}
