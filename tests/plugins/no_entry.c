/* A shared module without anyevent's entry symbol. */
__attribute__((visibility("default"))) int not_an_anyevent_plugin(void) { return 42; }
