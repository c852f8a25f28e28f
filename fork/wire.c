/* Sending frames, for both ends of the protocol (wire.h). */
#include "wire.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "wire_io.h"

ssize_t ae__wire_sendmsg(int sock, struct iovec *iov, int n, int fd, int flags)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    if (fd >= 0) {
        memset(&u, 0, sizeof u);
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t r;
    do
        r = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r;
}

/* Send every iov in full, fd with the first byte. */
static int send_all(int sock, struct iovec *iov, int n, int fd)
{
    int i = 0;
    while (i < n) {
        ssize_t r = ae__wire_sendmsg(sock, iov + i, n - i, fd, 0);
        if (r < 0)
            return -1;
        fd = -1; /* went with the first byte */
        while (i < n && (size_t)r >= iov[i].iov_len)
            r -= (ssize_t)iov[i++].iov_len;
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + r;
            iov[i].iov_len -= (size_t)r;
        }
    }
    return 0;
}

int ae__wire_send(int sock, int cmd, const void *data, size_t len, int fd)
{
    unsigned char h[AE_FORK_HDR];
    ae__wire_hdr(h, cmd, (uint32_t)len);
    struct iovec iov[2] = {{h, sizeof h}, {(void *)data, len}};
    return send_all(sock, iov, len ? 2 : 1, fd);
}

int ae__wire_send2(int sock, int cmd1, const void *data1, size_t len1, int cmd2, const void *data2, size_t len2)
{
    unsigned char h1[AE_FORK_HDR], h2[AE_FORK_HDR];
    ae__wire_hdr(h1, cmd1, (uint32_t)len1);
    ae__wire_hdr(h2, cmd2, (uint32_t)len2);
    struct iovec iov[4] = {{h1, sizeof h1}, {(void *)data1, len1}, {h2, sizeof h2}, {(void *)data2, len2}};
    int n = cmd2 < 0 ? 2 : len2 ? 4 : 3;
    return send_all(sock, iov, n, -1);
}
