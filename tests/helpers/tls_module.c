/* tls_module.c: a module with __thread variables, loaded by tls_dlopen with
 * dlopen (its TLS is dynamic: __tls_get_addr allocates each thread's). */
static __thread int number = -1;
static __thread char text[32] = "unset";

__attribute__((visibility("default"))) int *tls_module_number(void) { return &number; }
__attribute__((visibility("default"))) char *tls_module_text(void) { return text; }
