/* A plugin whose entry finds it cannot run here and says why. */
#include "plugin.h"

const ae_backend_services *ae_core;

AE_BACKEND_ENTRY(services)
{
    if (ae_plugin_accept(services) == 0)
        ae_core->set_error(AE_ENOTSUP, "refuses: this machine has no frobnicator");
    return NULL;
}
