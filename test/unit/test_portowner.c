/*
 * Unit tests of lib/portowner: the errno of a taken port and the process
 * that holds it, with listeners this test opens on loopback.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portowner.h"

/* A listening socket of the given family on an ephemeral port; its port. */
static int
listen_on(int family, unsigned *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = socket(family, SOCK_STREAM, 0);

	cr_assert(fd >= 0);
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	cr_assert(bind(fd, (struct sockaddr *)&ss, family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == 0);
	cr_assert(listen(fd, 1) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
	*port = ntohs(family == AF_INET ?
	    ((struct sockaddr_in *)&ss)->sin_port :
	    ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

Test(portowner, taken_port_gives_eaddrinuse_and_this_process)
{
	char who[64], want[64];
	unsigned port;
	int fd = listen_on(AF_INET6, &port);

	cr_assert_eq(portowner_bind_errno(port), EADDRINUSE);
	cr_assert(portowner_find(port, who, sizeof(who)));
	snprintf(want, sizeof(want), "pid %d (", (int)getpid());
	cr_assert(strncmp(who, want, strlen(want)) == 0, "got %s", who);
	close(fd);
}

Test(portowner, ipv4_listener_is_found_too)
{
	char who[64];
	unsigned port;
	int fd = listen_on(AF_INET, &port);

	cr_assert_eq(portowner_bind_errno(port), EADDRINUSE);
	cr_assert(portowner_find(port, who, sizeof(who)));
	cr_assert(strstr(who, "pid ") == who);
	close(fd);
}

Test(portowner, free_port_binds_and_has_no_owner)
{
	char who[64] = "x";
	unsigned port;
	int fd = listen_on(AF_INET6, &port);

	close(fd);
	cr_assert_eq(portowner_bind_errno(port), 0);
	cr_assert_not(portowner_find(port, who, sizeof(who)));
	cr_assert_str_eq(who, "");
}

Test(portowner, a_bound_socket_that_does_not_listen_is_no_owner)
{
	struct sockaddr_in6 sa;
	socklen_t sl = sizeof(sa);
	char who[64];
	int fd = socket(AF_INET6, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	cr_assert_not(portowner_find(ntohs(sa.sin6_port), who, sizeof(who)));
	close(fd);
}
