/*
 * The backend interface as the core sees it: the public plugin ABI
 * (include/anyevent/backend.h) plus the services the built-in backends call
 * directly, without going through the services table.
 */
#ifndef AE_CORE_BACKEND_H
#define AE_CORE_BACKEND_H

#include "anyevent/backend.h"

/* The services, for built-in backends. */
int ae_backend_io_ready(ae_loop *loop, int fd, int revents);
int ae_backend_fd_ready(ae_loop *loop, int fd, void *fd_data, int revents);
void ae_backend_fd_event(void *fd_data, int revents);
void ae_backend_expire(ae_loop *loop);
int ae_backend_expire_checked(ae_loop *loop);
void ae_backend_signal_ready(ae_loop *loop, int signum);
void ae_backend_child_ready(ae_loop *loop, pid_t pid);
int ae_backend_iteration(ae_loop *loop);
int ae_backend_hooks_run(ae_loop *loop, int kind);
int ae_backend_idle_run(ae_loop *loop);
int ae__set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int ae__set_errno(const char *what);

/* Built-in backends (pureselect/). */
extern const ae_backend_ops ae__backend_poll;
extern const ae_backend_ops ae__backend_select;

#endif /* AE_CORE_BACKEND_H */
