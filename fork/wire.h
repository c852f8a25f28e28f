/* The protocol between anyevent and the processes of fork.h, shared by both
 * sides (libanyevent and ae-fork-server). docs/fork.md describes it.
 *
 * A frame is cmd (1 byte), len (4 bytes, host order: both ends run on one
 * machine), then len bytes. A frame that passes a file descriptor carries it
 * in SCM_RIGHTS with its first byte, and is always the first frame of its
 * sendmsg(); the receiver reads exactly one frame at a time with recvmsg(),
 * so it never reads into the next frame and never drops an fd. */
#ifndef AE_FORK_WIRE_H
#define AE_FORK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define AE_FORK_PROTOCOL 1
#define AE_FORK_HDR 5
#define AE_FORK_HDR_SIZE AE_FORK_HDR
#define AE_FORK_MAX_FRAME (1u << 30)

enum {
    /* parent -> process */
    AE_W_REQUIRE = 'r', /* shared object path: dlopen */
    AE_W_CALL = 'c',    /* symbol: int symbol(-1, n, items), non-zero fails */
    AE_W_ARG = 'a',     /* bytes: an item */
    AE_W_FD = 'h',      /* empty, one fd: an item */
    AE_W_FORK = 'f',    /* empty, one fd: fork; the child talks over that fd */
    AE_W_RUN = 'x',     /* symbol: answer READY, then exit(symbol(sock, n, items)) */
    AE_W_RPC = 'w',     /* symbol: answer READY, then serve RPC calls with it */
    /* process -> parent */
    AE_W_HELLO = 'P', /* u32 protocol, u32 pid, u32 flags: the first frame of every process */
    AE_W_EXIT = 'X',  /* u32 pid, i32 wait status: a fork of this template ended (portable path) */
    AE_W_ERROR = 'E', /* text: the process failed and refuses what follows */
    AE_W_READY = 'R', /* empty: the run symbol was found; the socket is the user's now */
};

/* HELLO flags */
#define AE_HELLO_FORWARDED 1u /* not the program's child: its status comes in EXIT frames of its template */

/* RPC frames after READY: request u32 len + bytes; reply u32 len, i32 rc + bytes. */
#define AE_RPC_REQ_HDR 4
#define AE_RPC_REP_HDR 8

static inline void ae__wire_hdr(unsigned char *h, int cmd, uint32_t len)
{
    h[0] = (unsigned char)cmd;
    __builtin_memcpy(h + 1, &len, 4);
}

static inline uint32_t ae__wire_u32(const unsigned char *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* Blocking: send one frame (with fd if fd >= 0) in full. 0 or -1 (errno). */
int ae__wire_send(int sock, int cmd, const void *data, size_t len, int fd);
/* Blocking: two frames in one sendmsg() (the second left out if cmd2 < 0). */
int ae__wire_send2(int sock, int cmd1, const void *data1, size_t len1, int cmd2, const void *data2, size_t len2);

#endif /* AE_FORK_WIRE_H */
