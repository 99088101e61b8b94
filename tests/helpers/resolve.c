/* resolve.c: getaddrinfo, getnameinfo, gethostbyname and gethostbyname_r
 * give the same answers for local names with and without the runtime
 * (/etc/hosts: no network needed). */
#include "check.h"
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

int main(void)
{
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
  char host[NI_MAXHOST], serv[NI_MAXSERV], buf[4096];
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(8080)};
  struct hostent he, *r;
  int herr;

  CHECK(getaddrinfo("localhost", "80", &hints, &res) == 0 && res);
  CHECK(getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0);
  printf("getaddrinfo: %s port %s\n", host, serv);
  freeaddrinfo(res);
  CHECK(getaddrinfo("no-such-host.invalid", NULL, &hints, &res) != 0);

  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  CHECK(getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICSERV) == 0);
  printf("getnameinfo: %s %s\n", host, serv);

  CHECK((r = gethostbyname("localhost")) && r->h_addrtype == AF_INET);
  printf("gethostbyname: %s %s\n", r->h_name, inet_ntoa(*(struct in_addr *)r->h_addr_list[0]));
  CHECK(gethostbyname_r("localhost", &he, buf, sizeof buf, &r, &herr) == 0 && r == &he);
  printf("gethostbyname_r: %s %s\n", he.h_name, inet_ntoa(*(struct in_addr *)he.h_addr_list[0]));
  return 0;
}
