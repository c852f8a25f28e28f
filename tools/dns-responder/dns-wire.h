/* The few bits of the DNS wire format the responder needs (RFC 1035): read
 * the one question of a query, write an answer to it. */
#ifndef DNS_RESPONDER_WIRE_H
#define DNS_RESPONDER_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum { DNS_TYPE_A = 1, DNS_CLASS_IN = 1 };
enum { DNS_RCODE_NOERROR = 0, DNS_RCODE_NXDOMAIN = 3 };
/* Longest answer dns_answer() writes: header, a question with the longest
 * name dns_read_query() accepts (257 bytes on the wire), one A record. */
enum { DNS_ANSWER_MAX = 12 + 257 + 4 + 16 };

struct dns_question {
    char name[256];  /* lower case, dotted, no trailing dot ("" for the root) */
    uint16_t type, dnsclass;
    size_t end;      /* offset just past the question in the query */
};

/* Read the single question of a standard query of len bytes. Returns 0, or
 * -1 if it is not one (too short, a response, not QUERY, not exactly one
 * question, a bad or compressed name). */
int dns_read_query(const uint8_t *query, size_t len, struct dns_question *q);

/* Write into out (DNS_ANSWER_MAX bytes) the response to query (already read
 * into q): its id, RD bit and question, the given rcode, and, if address is
 * not NULL, one A record with that address (4 bytes, network order) and a
 * TTL of 60 s. Returns the length written. */
size_t dns_answer(const uint8_t *query, const struct dns_question *q, int rcode,
                  const uint8_t *address, uint8_t *out);

#endif
