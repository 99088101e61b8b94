/* real.c: the table of the real libc functions the shim replaces, found
 * with dlsym(RTLD_NEXT) once.
 *
 * Notes.
 * A. Every real call goes through kz_real, so the shim never calls its own
 *    interposers by accident, and one place knows how each was found.
 * B. The table is filled from the constructor, before main and before the
 *    shim acts (kz_shim.ready).  An interposed function called earlier, by
 *    another library's constructor, fills it first (REAL() in shim.h).
 *    dlsym may allocate with calloc, which the shim does not interpose, so
 *    filling never re-enters the shim.
 */
#include "shim.h"

#include <dlfcn.h>
#include <pthread.h>

struct kz_shim_real kz_real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void fill(void)
{
#define X(ret, name, args) kz_real.name = (ret(*) args)dlsym(RTLD_NEXT, #name);
  KZ_SHIM_REAL_FUNCS(X)
#undef X
}

void kz_shim_real_init(void) { pthread_once(&real_once, fill); }
