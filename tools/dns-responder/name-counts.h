/* How many queries each name has had: an open-addressing hash table of
 * names, for --drop-attempts (drop the first K queries of every name). */
#ifndef DNS_RESPONDER_NAME_COUNTS_H
#define DNS_RESPONDER_NAME_COUNTS_H

struct name_counts {
    struct name_count *slots;
    unsigned long capacity, used;
};

/* Count one more query of name; returns the new count (1 the first time),
 * or 0 if out of memory. */
unsigned long name_counts_bump(struct name_counts *t, const char *name);

/* Free every name. The table is empty and reusable afterwards. */
void name_counts_clear(struct name_counts *t);

#endif
