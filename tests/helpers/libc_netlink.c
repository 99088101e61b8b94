/* libc_netlink: libc opens, uses and closes sockets of its own, inside
 * if_nameindex (a netlink socket: socket, sendto, recvmsg, close, all
 * internal calls), and a number it closes comes back at the next call.
 * Under the launcher the recvmsg reaches the shim (family "libc") and may
 * wait on the hub; the socket and its close must then be seen too, or a
 * later socket under the same number is never watched and the call hangs.
 * 2000 calls, each must list the same interfaces. */
#include "check.h"

#include <net/if.h>

static unsigned count(void)
{
  struct if_nameindex *list = if_nameindex(), *p;
  unsigned n = 0;
  CHECK(list != NULL);
  for (p = list; p->if_index; p++)
    n++;
  if_freenameindex(list);
  return n;
}

int main(void)
{
  unsigned first = count();
  CHECK(first > 0);
  for (int i = 0; i < 2000; i++)
    CHECK(count() == first);
  printf("2000 calls of if_nameindex, the same list each time\n");
  return 0;
}
