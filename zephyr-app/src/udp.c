/*
 * SPDX-License-Identifier: BSD-3-Clause
 *
 * UDP transport (CONFIG_ZEPTO_TRANSPORT_UDP): the socket calls of udp.rs, and the
 * thread that wakes the pump when a datagram arrives.
 *
 * The pump thread receives (non-blocking) and sends itself. The watcher waits in
 * zsock_poll() until the socket is readable, sets `pending`, gives the pump's wake
 * semaphore and then waits on `drained`, which the pump gives when a receive finds
 * the socket empty; then the watcher polls again. No thread polls on a timer.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/net/socket.h>
#include <zephyr/sys/atomic.h>

/* An IPv4 address and port (udp.rs UdpAddr); port in host byte order. */
struct zepto_udp_addr {
	uint8_t addr[4];
	uint16_t port;
};

void zepto_wake_give(void);

static int zepto_udp_sock = -1;
static atomic_t zepto_udp_pending_flag;
K_SEM_DEFINE(zepto_udp_drained, 0, 1);

static void zepto_udp_watch(void *a, void *b, void *c)
{
	ARG_UNUSED(a);
	ARG_UNUSED(b);
	ARG_UNUSED(c);

	for (;;) {
		struct zsock_pollfd p = {.fd = zepto_udp_sock, .events = ZSOCK_POLLIN};
		int n = zsock_poll(&p, 1, -1);

		if (n > 0 && (p.revents & ZSOCK_POLLNVAL) == 0) {
			/* A datagram, or an error the pump's next receive reports and
			 * clears (e.g. an ICMP "port unreachable" for an earlier send).
			 */
			atomic_set(&zepto_udp_pending_flag, 1);
			zepto_wake_give();
			k_sem_take(&zepto_udp_drained, K_FOREVER);
		} else if (n != 0) {
			/* poll() failed or the socket is gone: do not spin on it. */
			k_sleep(K_MSEC(1000));
		}
	}
}

K_THREAD_DEFINE(zepto_udp_watcher, CONFIG_ZEPTO_UDP_WATCH_STACK_SIZE, zepto_udp_watch, NULL,
		NULL, NULL, CONFIG_ZEPTO_PUMP_PRIORITY, 0, SYS_FOREVER_MS);

/* Opens the socket on every IPv4 interface, port `port`, and starts the watcher:
 * 0, or a negative errno.
 */
int zepto_udp_open(uint16_t port)
{
	struct sockaddr_in me = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr = {.s_addr = htonl(INADDR_ANY)},
	};
	int s = zsock_socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);

	if (s < 0) {
		return -errno;
	}
	if (zsock_bind(s, (struct sockaddr *)&me, sizeof(me)) < 0) {
		int err = -errno;

		(void)zsock_close(s);
		return err;
	}
	zepto_udp_sock = s;
	k_thread_start(zepto_udp_watcher);
	return 0;
}

/* True if the watcher saw datagrams the pump has not read yet. */
bool zepto_udp_pending(void)
{
	return atomic_get(&zepto_udp_pending_flag) != 0;
}

/* Receives one datagram without waiting: its length (its full length may be cut to
 * len), or -EAGAIN when none waits (then the watcher may poll again).
 */
ssize_t zepto_udp_recv(uint8_t *buf, size_t len, struct zepto_udp_addr *from)
{
	struct sockaddr_in src;
	socklen_t src_len = sizeof(src);
	ssize_t n;

	memset(&src, 0, sizeof(src));
	n = zsock_recvfrom(zepto_udp_sock, buf, len, ZSOCK_MSG_DONTWAIT, (struct sockaddr *)&src,
			   &src_len);
	if (n < 0) {
		int err = errno;

		if (atomic_cas(&zepto_udp_pending_flag, 1, 0)) {
			k_sem_give(&zepto_udp_drained);
		}
		return -err;
	}
	memcpy(from->addr, &src.sin_addr.s_addr, sizeof(from->addr));
	from->port = ntohs(src.sin_port);
	return n;
}

/* Sends one datagram: 0, or a negative errno. */
int zepto_udp_send(const uint8_t *buf, size_t len, const struct zepto_udp_addr *to)
{
	struct sockaddr_in dst = {
		.sin_family = AF_INET,
		.sin_port = htons(to->port),
	};
	ssize_t n;

	memcpy(&dst.sin_addr.s_addr, to->addr, sizeof(to->addr));
	n = zsock_sendto(zepto_udp_sock, buf, len, 0, (struct sockaddr *)&dst, sizeof(dst));
	if (n < 0) {
		return -errno;
	}
	return n == (ssize_t)len ? 0 : -EIO;
}
