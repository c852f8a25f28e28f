#include <hiredis/adapters/libev.h>

#include "native.h"

int native_attach(redisAsyncContext *ac, void *native) { return redisLibevAttach(native, ac); }
