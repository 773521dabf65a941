/*
 * portowner.c - why a TCP port cannot be listened on, and who holds it:
 * a test bind for the errno, /proc/net/tcp{,6} for the listening socket's
 * inode, /proc/<pid>/fd for the process that has it open.
 */
#include "portowner.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORTOWNER_LISTEN 0x0A	/* TCP_LISTEN in /proc/net/tcp's "st" */

int
portowner_bind_errno(unsigned port)
{
	struct sockaddr_in6 sa;
	int fd, one = 1, off = 0, rc = 0;

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_port = htons((uint16_t)port);
	sa.sin6_addr = in6addr_any;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		rc = errno;
	close(fd);
	return rc;
}

/*
 * The inode of a socket listening on port in one /proc/net table, or 0.
 * Lines: "sl local_address rem_address st ... uid timeout inode"; the
 * local address ends with ":<port in hex>".
 */
static unsigned long
portowner_inode(const char *table, unsigned port)
{
	char line[512], local[80];
	unsigned lport, st;
	unsigned long inode, found = 0;
	char *colon;
	FILE *f;

	f = fopen(table, "re");
	if (f == NULL)
		return 0;
	if (fgets(line, sizeof(line), f) == NULL) {	/* header */
		fclose(f);
		return 0;
	}
	while (found == 0 && fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, " %*s %79s %*s %x %*s %*s %*s %*s %*s %lu",
		    local, &st, &inode) != 3)
			continue;
		colon = strrchr(local, ':');
		if (colon == NULL || sscanf(colon + 1, "%x", &lport) != 1)
			continue;
		if (lport == port && st == PORTOWNER_LISTEN && inode != 0)
			found = inode;
	}
	fclose(f);
	return found;
}

/* True if process pid has the socket of inode among its open files. */
static bool
portowner_has(const char *pid, const char *want)
{
	char dir[300], path[600], target[64];
	struct dirent *e;
	bool has = false;
	ssize_t n;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%s/fd", pid);
	d = opendir(dir);
	if (d == NULL)
		return false;
	while (!has && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		has = strcmp(target, want) == 0;
	}
	closedir(d);
	return has;
}

bool
portowner_find(unsigned port, char *buf, size_t len)
{
	char want[48], path[300], comm[64] = "";
	unsigned long inode;
	struct dirent *e;
	bool found = false;
	FILE *f;
	DIR *d;

	buf[0] = '\0';
	inode = portowner_inode("/proc/net/tcp6", port);
	if (inode == 0)
		inode = portowner_inode("/proc/net/tcp", port);
	if (inode == 0)
		return false;
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	d = opendir("/proc");
	if (d == NULL)
		return false;
	while (!found && (e = readdir(d)) != NULL) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		found = portowner_has(e->d_name, want);
		if (!found)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		f = fopen(path, "re");
		if (f != NULL) {
			if (fgets(comm, sizeof(comm), f) != NULL)
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		snprintf(buf, len, "pid %s (%s)", e->d_name, comm);
	}
	closedir(d);
	return found;
}
