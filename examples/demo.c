#include <anyevent.h>
int main(void) { return 0; }
