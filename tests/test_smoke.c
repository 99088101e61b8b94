#include <criterion/criterion.h>
#include <kudzu.h>
static void *body(void *arg) { kz_sleep(0.01); return (char *)arg + 1; }
Test(smoke, spawn_join)
{
  void *r = NULL;
  kz_green_t g = kz_spawn(body, (void *)41);
  cr_assert(g != 0);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0);
  cr_assert_eq((long)r, 42);
}
