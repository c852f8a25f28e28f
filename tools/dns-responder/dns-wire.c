#include "dns-wire.h"

#include <string.h>

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int dns_read_query(const uint8_t *query, size_t len, struct dns_question *q)
{
    if (len < 12)
        return -1;
    unsigned flags = get16(query + 2);
    int is_response = flags >> 15, opcode = (flags >> 11) & 15;
    if (is_response || opcode != 0 || get16(query + 4) != 1)
        return -1;
    size_t at = 12, name_len = 0;
    for (;;) {
        if (at >= len)
            return -1;
        unsigned label = query[at++];
        if (label == 0)
            break;
        if (label > 63 || at + label > len || name_len + label + 1 > 255)
            return -1; /* also rejects compression pointers (0xC0...) */
        if (name_len)
            q->name[name_len++] = '.';
        for (unsigned i = 0; i < label; i++) {
            uint8_t ch = query[at + i];
            q->name[name_len++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        at += label;
    }
    q->name[name_len] = '\0';
    if (at + 4 > len)
        return -1;
    q->type = get16(query + at);
    q->dnsclass = get16(query + at + 2);
    q->end = at + 4;
    return 0;
}

size_t dns_answer(const uint8_t *query, const struct dns_question *q, int rcode,
                  const uint8_t *address, uint8_t *out)
{
    unsigned query_flags = get16(query + 2);
    /* QR, opcode 0, AA, RD as asked, RA, rcode. */
    unsigned flags = 0x8000u | 0x0400u | (query_flags & 0x0100u) | 0x0080u | (unsigned)(rcode & 15);
    memcpy(out, query, 2); /* id */
    put16(out + 2, flags);
    put16(out + 4, 1);
    put16(out + 6, address ? 1 : 0);
    put16(out + 8, 0);
    put16(out + 10, 0);
    size_t question_len = q->end - 12;
    memcpy(out + 12, query + 12, question_len);
    size_t at = 12 + question_len;
    if (address) {
        static const uint8_t record[] = {
            0xC0, 0x0C,             /* the name: a pointer to the question's */
            0x00, DNS_TYPE_A, 0x00, DNS_CLASS_IN,
            0x00, 0x00, 0x00, 60,   /* TTL */
            0x00, 0x04,
        };
        memcpy(out + at, record, sizeof record);
        memcpy(out + at + sizeof record, address, 4);
        at += sizeof record + 4;
    }
    return at;
}
