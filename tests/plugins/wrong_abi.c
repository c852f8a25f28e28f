/* A plugin built for an ABI version that does not exist. */
#include "plugin.h"

const ae_backend_services *ae_core;

static int never_init(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
    return -1;
}

static const ae_backend_ops ops = {
    .abi_version = 999,
    .struct_size = sizeof(ae_backend_ops),
    .name = "wrongabi",
    .init = never_init,
};

AE_BACKEND_ENTRY(services)
{
    (void)services;
    return &ops;
}
