/* What every backend plugin shares: the core's services, kept by the entry
 * function, and the check that the core is one the plugin can work with. */
#ifndef AE_BACKENDS_PLUGIN_H
#define AE_BACKENDS_PLUGIN_H

#include <fcntl.h>

#include "backend.h"

#define AE_PLUGIN_ENTRY __attribute__((visibility("default"))) const ae_backend_ops *anyevent_backend_entry

/* The core's services; set once by the entry function. */
extern const ae_backend_services *ae_core;

/* Keeps services if they are complete; 0, or -1 (error set if possible). */
static inline int ae_plugin_accept(const ae_backend_services *services)
{
    if (!services || services->version < 1 ||
        services->struct_size < offsetof(ae_backend_services, set_errno) + sizeof services->set_errno)
        return -1;
    ae_core = services;
    return 0;
}

/* The check every fd_update makes going from no interest to some, as the
 * native libraries do not all make it at once. */
static inline int ae_plugin_fd_check(int fd)
{
    if (fcntl(fd, F_GETFD) < 0)
        return ae_core->set_error(AE_EBADF, "ae_io: fd %d is not open", fd);
    return 0;
}

#endif
