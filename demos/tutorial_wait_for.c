/* tutorial_wait_for.c: wait_for timing out.  The asyncio original:
 *
 *   async def eternity():
 *       await asyncio.sleep(3600)       # Sleep for one hour
 *       print('yay!')
 *   async def main():
 *       try: await asyncio.wait_for(eternity(), timeout=1.0)
 *       except asyncio.TimeoutError: print('timeout!')
 *
 * Here the timeout is 0.2 s, and the cancelled green thread says so.
 */
#include <kudzu.h>

#include <errno.h>
#include <stdio.h>

static void *eternity(void *arg)
{
  if (kz_sleep(3600) == 0)
    printf("yay!\n");
  else if (errno == ECANCELED)
    printf("eternity: cancelled\n");
  return NULL;
}

static void *demo(void *arg)
{
  kz_green_t g = kz_spawn(eternity, NULL);
  if (kz_wait_for(g, NULL, 0.2) == -1 && errno == ETIMEDOUT)
    printf("timeout!\n");
  return NULL;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, NULL) == 0 ? 0 : 1;
}
