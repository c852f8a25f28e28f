#include <hiredis/adapters/libevent.h>

#include "native.h"

int native_attach(redisAsyncContext *ac, void *native) { return redisLibeventAttach(ac, native); }
