#include <hiredis/adapters/libuv.h>

#include "native.h"

int native_attach(redisAsyncContext *ac, void *native) { return redisLibuvAttach(ac, native); }
